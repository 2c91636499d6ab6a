"""CSV downloads for finance: a header row, one row per line, Decimals exactly as stored.

Spreadsheets run a cell that starts with = + - @ (or a tab / carriage return) as a formula, so text that a
tenant or member chose — names, slugs — is prefixed with an apostrophe when it starts with one of those.
Numbers are written as numbers and never altered: a negative Decimal is data, not a formula.
"""

import csv
from decimal import Decimal

from django.http import HttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, Decimal)):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_response(*, filename: str, header: list[str], rows) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return response
