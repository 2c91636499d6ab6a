"""REST API for a tenant's usage summary and invoices (/api/usage/, /api/invoices/...).

Tenant admins only, as on the dashboard pages: a member's API key acts as that member and gets 403. Reads go
through billing.selectors, which take the tenant, so another tenant's invoice id answers 404 like a missing
one. Money is serialized as decimal strings (exact, never floats). The usage summary takes `end_user` to show only
the API requests sent for one of the tenant's end users.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from . import selectors
from .models import END_USER_MAX_LENGTH, Invoice, InvoiceLine
from .months import month_start, parse_month


class BillingErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class IsTenantAdmin(BasePermission):
    message = "Only tenant admins can see usage and invoices."

    def has_permission(self, request, view) -> bool:
        membership = getattr(request, "membership", None)
        return bool(membership is not None and membership.is_admin)


MONEY = {"max_digits": 20, "decimal_places": 10}


class UsageTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    estimated = serializers.IntegerField(help_text="Requests whose output tokens were estimated.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.DecimalField(**MONEY, help_text="Provider cost, USD.")
    billed = serializers.DecimalField(**MONEY, help_text="Billed, USD.")


class UsageByModelSerializer(UsageTotalsSerializer):
    endpoint_slug = serializers.CharField()
    provider = serializers.CharField()


class UsageByDaySerializer(UsageTotalsSerializer):
    day = serializers.DateField()


class UsageSummarySerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM (UTC).")
    end_user = serializers.CharField(allow_null=True, help_text="The end-user filter, when one was given.")
    totals = UsageTotalsSerializer()
    by_model = UsageByModelSerializer(many=True)
    by_day = UsageByDaySerializer(many=True)


def _totals(row: dict) -> dict:
    return {k: (v if v is not None else 0) for k, v in row.items()}


ERRORS = {
    401: OpenApiResponse(BillingErrorSerializer, description="No or an invalid API key / session."),
    403: OpenApiResponse(BillingErrorSerializer, description="Not an admin of an active tenant."),
}


class UsageSummaryView(APIView):
    permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES + [IsTenantAdmin]

    @extend_schema(
        operation_id="usage_summary",
        parameters=[OpenApiParameter("month", OpenApiTypes.STR, description="YYYY-MM; default this month.",
                                     pattern=r"^\d{4}-\d{2}$"),
                    OpenApiParameter("end_user", OpenApiTypes.STR,
                                     description="Only API requests sent for this end-user id (OpenAI `user` or "
                                                 "`safety_identifier`, Anthropic `metadata.user_id`; at most "
                                                 f"{END_USER_MAX_LENGTH} characters).")],
        responses={200: UsageSummarySerializer, 400: BillingErrorSerializer, **ERRORS},
    )
    def get(self, request):
        try:
            month = parse_month(request.query_params.get("month"), default=month_start())
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        end_user = request.query_params.get("end_user") or None
        if end_user is not None and len(end_user) > END_USER_MAX_LENGTH:
            return Response({"detail": f"end_user has at most {END_USER_MAX_LENGTH} characters."},
                            status=status.HTTP_400_BAD_REQUEST)
        scope = {"tenant": request.tenant, "month": month, "end_user": end_user}
        body = {
            "month": f"{month:%Y-%m}",
            "end_user": end_user,
            "totals": _totals(selectors.usage_totals(**scope)),
            "by_model": [_totals(r) for r in selectors.usage_by_model(**scope)],
            "by_day": [{**_totals(r), "day": r["day"].date()} for r in selectors.usage_by_day(**scope)],
        }
        return Response(UsageSummarySerializer(body).data)


class InvoiceLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = ["endpoint_slug", "provider", "request_count", "estimated_count", "input_tokens", "output_tokens",
                  "cache_read_tokens", "cache_write_tokens", "cost", "billed", "amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    number = serializers.CharField(source="display_number", read_only=True)
    month = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=Invoice.STATUS_CHOICES, read_only=True)

    class Meta:
        model = Invoice
        fields = ["id", "number", "month", "status", "plan_name", "request_count", "total_tokens", "usage_cost",
                  "usage_billed", "usage_amount", "fee", "credit", "total", "finalized_at"]

    def get_month(self, invoice) -> str:
        return f"{invoice.month:%Y-%m}"


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = InvoiceSerializer.Meta.fields + ["markup_percent", "included_credit", "lines"]


class InvoiceListView(APIView):
    permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES + [IsTenantAdmin]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="invoices_list", responses={200: InvoiceSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.invoice_list(tenant=request.tenant), request, view=self)
        return paginator.get_paginated_response(InvoiceSerializer(page, many=True).data)


class InvoiceDetailView(APIView):
    permission_classes = api_settings.DEFAULT_PERMISSION_CLASSES + [IsTenantAdmin]

    @extend_schema(operation_id="invoices_retrieve",
                   responses={200: InvoiceDetailSerializer, **ERRORS,
                              404: OpenApiResponse(BillingErrorSerializer, description="No such invoice in your tenant.")})
    def get(self, request, invoice_id: int):
        try:
            invoice = selectors.invoice_get(tenant=request.tenant, invoice_id=invoice_id)
        except Invoice.DoesNotExist:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(InvoiceDetailSerializer(invoice).data)
