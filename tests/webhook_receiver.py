"""A webhook receiver for tests: records each request as a JSON line and answers 200,
or 500 to the first ``--fail`` requests, after ``--delay`` seconds.

    python tests/webhook_receiver.py --port 8123 --log requests.jsonl --fail 3
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    options = parser.parse_args()
    lock = threading.Lock()
    failures_left = [options.fail]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                failing = failures_left[0] > 0
                failures_left[0] -= failing
                status = 500 if failing else 200
                record = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode(),
                    "status": status,
                }
                with open(options.log, "a") as log:
                    log.write(json.dumps(record) + "\n")
            time.sleep(options.delay)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", options.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
