from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import Http404
from django.utils.http import url_has_allowed_host_and_scheme


def add_service_errors(form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form: keyed errors on their field when the form has it."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def get_or_404(selector, **kwargs):
    """Call a tenant-scoped get selector; another tenant's id and a missing id both become the same 404."""
    try:
        return selector(**kwargs)
    except (ObjectDoesNotExist, ValueError, ValidationError):
        raise Http404 from None


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default
