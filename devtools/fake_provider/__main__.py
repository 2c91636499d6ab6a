import argparse

from .server import serve

parser = argparse.ArgumentParser(description="Run the fake LLM provider on loopback.")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed on stdout)")
args = parser.parse_args()
serve(host=args.host, port=args.port)
