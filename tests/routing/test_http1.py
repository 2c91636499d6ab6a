"""routing.http1, the lean HTTP/1.1 transport under the routing core's httpx client, against a tiny scripted
server on loopback: framing (length, chunked, until close), keep-alive reuse, and each failure mapped to
httpx's own exception class (routing.dispatch turns those into fallback-able errors)."""

import asyncio

import httpx
import pytest

from routing.http1 import LeanHTTPTransport


class Server:
    """Reads each request (head and content-length body) and answers with `respond(writer, request_number)`.
    Counts connections and keeps the raw requests."""

    def __init__(self, respond):
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if await self.respond(writer, len(self.requests)) == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()


def ok(body: bytes = b'{"ok": true}'):
    async def respond(writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
    return respond


def client(**limits) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=LeanHTTPTransport(limits=httpx.Limits(**limits)),
                             timeout=httpx.Timeout(connect=1, read=0.3, write=1, pool=0.3))


def run(coro):
    return asyncio.run(coro)


def test_keep_alive_connection_is_reused_and_the_request_goes_out_whole():
    async def go():
        async with Server(ok(b"hello")) as server, client() as http:
            first = await http.post(f"{server.url}/v1/x?a=1", content=b'{"q": 1}', headers={"x-key": "k"})
            second = await http.post(f"{server.url}/v1/x", content=b"{}")
            return server, first, second

    server, first, second = run(go())
    assert (first.status_code, first.content, second.content) == (200, b"hello", b"hello")
    assert first.headers["content-type"] == "application/json"
    assert server.connections == 1
    head, body = server.requests[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\n") and b"\r\nx-key: k" in head
    assert body == b'{"q": 1}'


def test_chunked_response_streams_as_it_arrives_and_the_connection_is_reused():
    async def respond(writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"3\r\none\r\n0\r\n\r\n")

    async def go():
        async with Server(respond) as server, client() as http:
            async with http.stream("POST", f"{server.url}/s", content=b"{}") as response:
                parts = [part async for part in response.aiter_bytes()]
            again = await http.post(f"{server.url}/s", content=b"{}")
            return server, parts, again

    server, parts, again = run(go())
    assert parts == [b"data: ", b"one"]
    assert again.content == b"data: one"
    assert server.connections == 1


def test_a_body_delimited_by_the_connection_closing_is_read_whole_and_not_reused():
    async def respond(writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        return "close"

    async def go():
        async with Server(respond) as server, client() as http:
            first = await http.post(f"{server.url}/", content=b"{}")
            second = await http.post(f"{server.url}/", content=b"{}")
            return server, first, second

    server, first, second = run(go())
    assert first.content == second.content == b"all of it"
    assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_without_an_error():
    async def respond(writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return "close"  # keeps nothing alive, without saying so

    async def go():
        async with Server(respond) as server, client() as http:
            await http.post(f"{server.url}/", content=b"{}")
            await asyncio.sleep(0.05)  # the close reaches the pooled connection
            second = await http.post(f"{server.url}/", content=b"{}")
            return server, second

    server, second = run(go())
    assert second.content == b"ok" and server.connections == 2


def test_a_provider_that_does_not_answer_is_a_read_timeout_and_its_connection_is_dropped():
    async def respond(writer, n):
        if n == 1:
            await asyncio.sleep(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def go():
        async with Server(respond) as server, client() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(f"{server.url}/", content=b"{}")
            second = await http.post(f"{server.url}/", content=b"{}")
            return server, second

    server, second = run(go())
    assert second.content == b"ok" and server.connections == 2


def test_a_stream_closed_before_its_end_does_not_go_back_to_the_pool():
    async def respond(writer, n):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    async def go():
        async with Server(respond) as server, client() as http:
            async with http.stream("POST", f"{server.url}/", content=b"{}") as response:
                async for _ in response.aiter_bytes():
                    break
            await http.post(f"{server.url}/", content=b"{}")
            return server

    assert run(go()).connections == 2


@pytest.mark.parametrize("respond, error", [
    ("close", httpx.RemoteProtocolError),  # disconnects without a response
    ("garbage", httpx.RemoteProtocolError),
    ("half", httpx.RemoteProtocolError),  # closes mid-body
], ids=["no response", "malformed", "cut mid-body"])
def test_broken_answers_raise_httpx_protocol_errors(respond, error):
    async def answer(writer, n):
        if respond == "garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif respond == "half":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        return "close"

    async def go():
        async with Server(answer) as server, client() as http:
            with pytest.raises(error):
                await http.post(f"{server.url}/", content=b"{}")

    run(go())


def test_nothing_listening_is_a_connect_error():
    async def go():
        async with Server(ok()) as server:
            url = server.url
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"{url}/", content=b"{}")

    run(go())


def test_at_the_connection_limit_a_request_waits_for_a_free_connection_or_times_out():
    async def respond(writer, n):
        await asyncio.sleep(0.5 if n <= 2 else 0)  # the two "slow" ones
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def go():
        async with Server(respond) as server, client(max_connections=1) as http:
            http.timeout = httpx.Timeout(connect=1, read=2, write=1, pool=0.1)
            slow = asyncio.ensure_future(http.post(f"{server.url}/", content=b"{}"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await http.post(f"{server.url}/", content=b"{}")
            await slow
            http.timeout = httpx.Timeout(connect=1, read=2, write=1, pool=2)
            slow = asyncio.ensure_future(http.post(f"{server.url}/", content=b"{}"))
            await asyncio.sleep(0.05)
            waited = await http.post(f"{server.url}/", content=b"{}")
            await slow
            return server, waited

    server, waited = run(go())
    assert waited.content == b"ok" and server.connections == 1


@pytest.fixture
def self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, made with the openssl command line."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_is_verified_against_the_trusted_certificates(self_signed):
    import ssl

    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def go():
        server = Server(ok(b"secret"))
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0, ssl=server_ctx)
        url = f"https://127.0.0.1:{server.server.sockets[0].getsockname()[1]}/"
        try:
            transport = LeanHTTPTransport(ssl_context=trusting)
            async with httpx.AsyncClient(transport=transport, timeout=2) as http:
                answers = [(await http.post(url, content=b"{}")).content for _ in range(2)]
            async with httpx.AsyncClient(transport=LeanHTTPTransport(), timeout=2) as http:
                with pytest.raises(httpx.ConnectError):  # the system store does not trust it
                    await http.post(url, content=b"{}")
            return answers, server.connections
        finally:
            server.server.close()

    answers, connections = run(go())
    assert answers == [b"secret", b"secret"]
    assert connections == 1  # kept alive for both calls (the refused handshake never reached the handler)
