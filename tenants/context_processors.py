from .access import is_platform_admin
from .selectors import membership_list_for_user


def tenancy(request):
    """The header's tenant switcher and nav: the user's memberships, fetched only when a template asks."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def memberships():
        return list(membership_list_for_user(user=user))

    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": getattr(request, "membership", None),
        "user_memberships": memberships,
        "is_platform_admin": lambda: is_platform_admin(user),
        # The first path segment, to mark the current section in the nav.
        "nav_section": request.path.strip("/").split("/", 1)[0],
    }
