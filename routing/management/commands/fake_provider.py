from django.core.management.base import BaseCommand

from routing.fake_provider.server import serve


class Command(BaseCommand):
    help = (
        "Run the fake LLM provider (Anthropic Messages + OpenAI-compatible chat completions) on loopback. "
        "Point ANTHROPIC_BASE_URL=http://127.0.0.1:PORT and MOONSHOT_BASE_URL=http://127.0.0.1:PORT/v1 at it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed on stdout)")

    def handle(self, *args, host, port, **options):
        serve(host=host, port=port)
