"""An HTTP app as Dapr's HTTP subscriber examples are: GET /dapr/subscribe, POST /orders,
and GET /healthz, which fails while the file named by SICK_FILE exists."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SICK = os.environ["SICK_FILE"]


class App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/dapr/subscribe":
            self._answer(200, [{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}])
        elif self.path == "/healthz":
            self._answer(500 if os.path.exists(SICK) else 200, {})
        else:
            self._answer(404, {})

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["content-length"])))
        print(f"Subscriber received: orderId={event['data']['orderId']}", flush=True)
        self._answer(200, {"status": "SUCCESS"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the probes would fill the output


ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), App).serve_forever()
