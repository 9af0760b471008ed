"""Serve a saved pydl model over HTTP: JSON in, JSON out, standard library only.

Run::

    python examples/serve.py model.npz --port 8000
    curl -s localhost:8000/predict -d '{"inputs": [[0.1, 0.2, ...]]}'

The model is a file written by ``pydl.save_model``. It is put in eval mode once (dropout off) and
every prediction runs under ``pydl.no_grad()``, the path pydl's inference replay speeds up.

Endpoints:

- ``POST /predict`` with ``{"inputs": [sample, ...]}``, each sample a (nested) list of numbers of
  the model's input shape (for an MLP: its ``in_features`` numbers). Answers
  ``{"outputs": [[...], ...]}``: the model's raw outputs (e.g. logits), one row per sample, as
  JSON numbers that convert back to the model's float32/float64 values exactly.
- ``GET /health`` answers ``{"status": "ok", "input_shape": [...], "dtype": "float32"}``.

Errors answer ``{"error": "<what was wrong>"}`` and the server keeps serving:

- 400: a body that is not UTF-8 JSON, not an object with a list ``"inputs"``, samples of the
  wrong shape (the message gives the expected and the received shape), non-numeric or
  non-finite values (JSON ``NaN``/``Infinity`` or numbers beyond the model's dtype);
- 411: no ``Content-Length`` (chunked uploads are not accepted);
- 413: a body larger than ``--max-body-bytes`` (default 1 MiB = 1048576 bytes; about 60,000 numbers
  written with full precision). It is refused from its ``Content-Length`` before anything is
  stored; what the client still sends is drained (never kept) for up to 2 s so that it can read
  the answer, then that connection is closed;
- 404 for other paths, 405 for other methods;
- 500 if the model fails or produces non-finite outputs (the traceback goes to stderr).

Threads: one thread per connection (``ThreadingHTTPServer``); parsing, validation and JSON
encoding run concurrently, the forward pass itself is serialised by one lock, because inference
replay reuses per-model buffers (pydl's kernels still use ``--threads`` threads inside it).
Connections are kept alive (HTTP/1.1); one that sends nothing for ``--timeout`` seconds (default
30) is closed, so idle or slow clients cannot hold threads forever.

Stop it with Ctrl-C or SIGTERM: the server stops accepting connections and exits with status 0.
It prints ``serving on http://HOST:PORT`` (with the real port when ``--port 0`` asked for any free
one) once it accepts connections. ``tools/serve_load.py`` measures requests/s and latencies.
"""

import argparse
import json
import math
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

import pydl
from pydl import nn

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_TIMEOUT = 30.0
LINGER_SECONDS = 2.0  # how long a refused body is drained before the connection is closed


class RequestError(Exception):
    """A request the server refuses: ``status`` is the HTTP status, the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def infer_input_shape(model):
    """Return the per-sample input shape of a model whose first layer is a Linear.

    Args:
        model: A ``pydl.nn.Module``.

    Returns:
        ``(in_features,)`` of the first Linear, if the first layer (depth first) is one.

    Raises:
        ValueError: the first layer is not a Linear; pass ``input_shape`` explicitly then.
    """
    for module in model.modules():
        if not module._modules:  # the first leaf layer
            if isinstance(module, nn.Linear):
                return (module.in_features,)
            raise ValueError(f"cannot infer the input shape from a model whose first layer is "
                             f"{type(module).__name__}; pass input_shape (--input-shape)")
    raise ValueError("the model has no layers")


class Predictor:
    """Validate JSON inputs and run a model on them under a lock, in eval mode, without a graph.

    Args:
        model: A ``pydl.nn.Module``; it is switched to eval mode.
        input_shape: The shape of one sample (a tuple of positive ints), or None (default) to
            take it from a leading Linear layer.

    Raises:
        ValueError: input_shape is None and cannot be inferred, or is not a tuple of positive
            ints.
    """

    def __init__(self, model, input_shape=None):
        self.model = model.eval()
        shape = infer_input_shape(model) if input_shape is None else tuple(input_shape)
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                for d in shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints, got "
                             f"{input_shape!r}")
        self.input_shape = shape
        params = list(model.parameters())
        self.dtype = params[0].data.dtype if params else np.dtype(np.float32)
        self._lock = threading.Lock()

    def parse(self, body):
        """Return the samples of a request body as a C-contiguous array of the model's dtype.

        Raises:
            RequestError: (400) the body is not a JSON object with a list of well-shaped,
                finite, numeric samples under ``"inputs"``.
        """
        try:
            request = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise RequestError(400, f"the body is not valid UTF-8 JSON: {e}") from None
        except RecursionError:
            raise RequestError(400, "the JSON nests too deeply") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            raise RequestError(400, 'expected a JSON object {"inputs": [sample, ...]}')
        inputs = request["inputs"]
        if not inputs:
            return np.empty((0,) + self.input_shape, self.dtype)
        try:
            arr = np.array(inputs)
        except (ValueError, TypeError, RecursionError):  # ragged, or nested beyond numpy's dims
            arr = None
        if arr is None or arr.dtype.kind not in "iuf" or arr.shape[1:] != self.input_shape:
            got = "ragged or non-numeric" if arr is None or arr.dtype.kind not in "iuf" else (
                f"shape {list(arr.shape[1:])}")
            raise RequestError(400, f"each sample must be a list of numbers of shape "
                                    f"{list(self.input_shape)}; the inputs are {got}")
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(arr, dtype=self.dtype)
        if not np.isfinite(x).all():
            raise RequestError(400, f"inputs must be finite {self.dtype.name} numbers")
        return x

    def predict(self, x):
        """Return the model's outputs for the samples ``x`` as a numpy array."""
        if len(x) == 0:
            return np.empty((0,), self.dtype)
        with self._lock, pydl.no_grad():
            return np.array(self.model(x).data)


class _Answered(Exception):
    """The handler already sent the response (raised to skip the rest of the request)."""


def _reject_constant(name):
    raise ValueError(f"{name} is not a finite number")


class PredictionHandler(BaseHTTPRequestHandler):
    """Answer ``/predict`` and ``/health`` for ``self.server.predictor``."""

    protocol_version = "HTTP/1.1"  # keep connections alive between requests
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (~40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "pydl-serve"
    error_content_type = "application/json"
    error_message_format = '{"error": "%(code)d %(message)s"}'

    def setup(self):
        self.timeout = self.server.timeout_seconds
        super().setup()

    def do_GET(self):
        if self.path == "/health":
            p = self.server.predictor
            self._send(200, {"status": "ok", "input_shape": list(p.input_shape),
                             "dtype": p.dtype.name})
        elif self.path == "/predict":
            self._send(405, {"error": "use POST for /predict"}, allow="POST")
        else:
            self._send(404, {"error": f"no such path {self.path!r}; use POST /predict or "
                                      f"GET /health"})

    def do_POST(self):
        if self.path != "/predict":
            self.close_connection = True  # its body stays unread
            if self.path == "/health":
                self._send(405, {"error": "use GET for /health"}, allow="GET")
            else:
                self._send(404, {"error": f"no such path {self.path!r}; use POST /predict"})
            return
        try:
            body = self._read_body()
            predictor = self.server.predictor
            out = predictor.predict(predictor.parse(body))
        except RequestError as e:
            self._send(e.status, {"error": str(e)})
            return
        except _Answered:
            return
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._send(500, {"error": "the model failed on these inputs (see the server's log)"})
            return
        try:
            payload = json.dumps({"outputs": out.tolist()}, allow_nan=False)
        except ValueError:
            self._send(500, {"error": "the model produced non-finite outputs"})
            return
        self._send_bytes(200, payload.encode("utf-8"))

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length (chunked uploads are "
                                    "not accepted)")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"invalid Content-Length {length!r}") from None
        limit = self.server.max_body_bytes
        if n > limit:
            self.close_connection = True
            self._send(413, {"error": f"the body has {n} bytes; the limit is {limit}"})
            self._discard_body(n)
            raise _Answered
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {n} bytes")
        return body

    def _discard_body(self, n):
        """Read and drop up to ``n`` body bytes for at most LINGER_SECONDS (lingering close).

        Closing a socket with unread data makes the kernel send a reset, which can destroy the
        response before the client reads it; so after refusing a body, the server stops writing
        and swallows what the client is still sending, in small chunks, never keeping it.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            while n > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(n, 1 << 16))
                if not chunk:
                    break
                n -= len(chunk)
        except OSError:
            pass  # the client went away: nothing left to protect

    def _send(self, status, obj, allow=None):
        self._send_bytes(status, json.dumps(obj).encode("utf-8"), allow)

    def _send_bytes(self, status, data, allow=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server holding a :class:`Predictor` and the request limits.

    Args:
        address: ``(host, port)``; port 0 picks a free port (read ``server_address``).
        predictor: The :class:`Predictor` to answer with.
        max_body_bytes: Largest accepted request body. Default 1 MiB.
        timeout: Seconds a connection may stay silent before it is closed. Default 30.
        verbose: Log every request to stderr. Default False (errors are always logged).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, predictor, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 timeout=DEFAULT_TIMEOUT, verbose=False):
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) \
                or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.predictor = predictor
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = float(timeout)
        self.verbose = verbose
        super().__init__(address, PredictionHandler)


def _shape(text):
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    return shape


def main(argv=None):
    """Parse the command line, load the model and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a file written by pydl.save_model")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 = any free port")
    parser.add_argument("--input-shape", type=_shape, default=None,
                        help="per-sample input shape, e.g. 3,32,32 (default: a leading Linear's "
                             "in_features)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted (default 1048576)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="close connections silent for this many seconds (default 30)")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads per forward pass (default: pydl's default)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    if args.threads is not None:
        pydl.set_num_threads(args.threads)
    try:
        predictor = Predictor(pydl.load_model(args.model), args.input_shape)
        server = PredictionServer((args.host, args.port), predictor, args.max_body_bytes,
                                  args.timeout, args.verbose)
    except (OSError, ValueError, TypeError) as e:
        parser.exit(2, f"serve.py: error: {e}\n")

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it must run in another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
