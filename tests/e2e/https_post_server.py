"""An HTTPS server on 127.0.0.1 (a free port) for POSTs, with a certificate the
test made: `answer(path, headers, body)` returns (status, content type, body
bytes). The OAuth2 token endpoint and the TLS-RPT report endpoint of the e2e
tests use it."""

import http.server
import ssl
import threading


class HttpsPostServer:
    def __init__(self, cert, key, answer, path="/"):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                status, ctype, data = answer(self.path, self.headers, self.rfile.read(n))
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
