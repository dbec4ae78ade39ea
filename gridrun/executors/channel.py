"""A request/reply line from tasks running on workers back to a handler in the client process.

`Executor.channel(handler)` returns a Channel whose `caller` is picklable and travels with a task;
on the worker, `caller(message)` sends the message to the client, where `handler(message)` runs (in a
thread of the client), and returns the handler's reply. The sweep uses it for pruning decisions and,
on remote executors, to bring each checkpoint a trial saves back to the client while the trial runs
(gridrun/sweep/remote.py; messages of up to the per-trial artifact limit, 50 MB by default); the
executor knows nothing of what the messages mean. A caller may be called from any thread of the worker
(a task's background checkpoint writer, a population's trial threads).

| executor | channel |
|---|---|
| in-process | a direct call |
| local pool | a socket on 127.0.0.1 with a random key (multiprocessing.connection) |
| Dask | the cluster's own queues and variables (distributed.Queue / Variable) |
| Ray | a Ray actor |

A caller that cannot reach its client returns None (the task goes on, undisturbed).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], Any]


class Channel:
    caller: Callable[[Any], Any]

    def close(self) -> None:
        return None


class DirectChannel(Channel):
    """Tasks in the client's own process call the handler directly."""

    def __init__(self, handler: Handler) -> None:
        self.caller = handler


class SocketCaller:
    """The worker side of a SocketChannel: one connection per process, reused, behind a lock."""

    _conns: dict[tuple[Any, ...], Any] = {}
    _lock = threading.Lock()

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        self.address, self.authkey = address, authkey

    def __call__(self, message: Any) -> Any:
        import os
        from multiprocessing.connection import Client

        key = (self.address, os.getpid())
        with SocketCaller._lock:
            try:
                conn = SocketCaller._conns.get(key)
                if conn is None:
                    conn = SocketCaller._conns[key] = Client(self.address, authkey=self.authkey)
                conn.send(message)
                return conn.recv()
            except (OSError, EOFError, ValueError):
                SocketCaller._conns.pop(key, None)
                return None


class SocketChannel(Channel):
    """The client side: a listener on 127.0.0.1 (local workers), one thread per connected worker."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        from multiprocessing.connection import Listener

        self.handler = handler
        authkey = secrets.token_bytes(16)
        self.listener = Listener((host, 0), authkey=authkey)
        self.caller = SocketCaller(self.listener.address, authkey)
        self.closed = False
        self.conns: list[Any] = []
        threading.Thread(target=self._accept, name="gridrun-channel", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except (OSError, EOFError):
                if self.closed:
                    return
                continue  # a wrong key or a broken handshake: ignore that connection
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        try:
            while not self.closed:
                message = conn.recv()
                try:
                    reply = self.handler(message)
                except Exception:  # noqa: BLE001 - the client's handler failed: the task goes on
                    reply = None
                conn.send(reply)
        except (OSError, EOFError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass


class _ServedChannel(Channel):
    """A client thread that takes requests from the engine (`_next`) and answers them (`_answer`)."""

    handler: Handler

    def _start(self, name: str) -> None:
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _next(self) -> tuple[Any, Any] | None:
        """The next (reply key, message), or None when none came in a while; raises to stop serving."""
        raise NotImplementedError

    def _answer(self, key: Any, reply: Any) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while not self.closed:
            try:
                item = self._next()
            except Exception:  # noqa: BLE001 - the engine is shutting down
                return
            if item is None:
                continue
            key, message = item
            try:
                reply = self.handler(message)
            except Exception:  # noqa: BLE001 - the client's handler failed: the task goes on
                reply = None
            try:
                self._answer(key, reply)
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=2)


class DaskCaller:
    """The worker side of a DaskChannel. Works from any thread of a worker: a task's own thread finds
    the worker's client (distributed.get_client); a thread the task started (a background checkpoint
    writer, a population's trial threads) may not, and then uses one client of this process made from
    the scheduler's address, kept for the process's life."""

    _clients: dict[str, Any] = {}
    _lock = threading.Lock()

    def __init__(self, name: str, address: str | None = None) -> None:
        self.name, self.address = name, address

    def _client(self) -> Any:
        import distributed

        try:
            return distributed.get_client()
        except ValueError:  # not in a task's thread, and no default client in this process
            if not self.address:
                raise
        with DaskCaller._lock:
            client = DaskCaller._clients.get(self.address)
            if client is None or client.status not in ("running", "connecting"):
                client = DaskCaller._clients[self.address] = distributed.Client(self.address, set_as_default=False)
            return client

    def __call__(self, message: Any) -> Any:
        try:
            import distributed

            client = self._client()
            reply_key = f"{self.name}-{secrets.token_hex(8)}"
            distributed.Queue(self.name, client=client).put({"reply": reply_key, "message": message})
            var = distributed.Variable(reply_key, client=client)
            try:
                return var.get(timeout=60)
            finally:
                var.delete()
        except Exception:  # noqa: BLE001 - no client to ask: the task goes on
            return None


class DaskChannel(_ServedChannel):
    """Requests through a named distributed.Queue, replies through one distributed.Variable each. The
    client waits on the queue without a timeout (a get that times out makes the scheduler log an error
    each time); `close` wakes it with a message of its own."""

    def __init__(self, handler: Handler, client: Any) -> None:
        import distributed

        self.handler, self.client = handler, client
        self.name = f"gridrun-channel-{secrets.token_hex(8)}"
        self.queue = distributed.Queue(self.name, client=client)
        self.caller = DaskCaller(self.name, getattr(client.scheduler, "address", None))
        self._start("gridrun-dask-channel")

    def _next(self) -> tuple[Any, Any] | None:
        try:
            item = self.queue.get()
        except Exception:  # noqa: BLE001 - the cluster going away: stop when closed, else try again soon
            if self.closed:
                raise
            time.sleep(0.5)
            return None
        if not isinstance(item, dict) or "reply" not in item:  # close()'s wake-up
            return None
        return item["reply"], item["message"]

    def close(self) -> None:
        self.closed = True
        try:
            self.queue.put("close", timeout=5)
        except Exception:  # noqa: BLE001 - the cluster is gone already: the thread has stopped or will
            pass
        self.thread.join(timeout=2)

    def _answer(self, key: Any, reply: Any) -> None:
        import distributed

        distributed.Variable(key, client=self.client).set(reply)


class RayCaller:
    def __init__(self, broker: Any) -> None:
        self.broker = broker

    def __call__(self, message: Any) -> Any:
        try:
            import ray

            return ray.get(self.broker.ask.remote(message), timeout=60)
        except Exception:  # noqa: BLE001 - no client to ask: the task goes on
            return None


def _broker_class():
    import asyncio

    import ray

    @ray.remote(num_cpus=0, max_concurrency=1000)
    class Broker:
        def __init__(self) -> None:
            self.requests: asyncio.Queue = asyncio.Queue()
            self.replies: dict[int, asyncio.Future] = {}
            self.count = 0

        async def ask(self, message: Any) -> Any:
            self.count += 1
            key = self.count
            future = asyncio.get_running_loop().create_future()
            self.replies[key] = future
            await self.requests.put((key, message))
            return await future

        async def next(self, timeout: float) -> Any:
            try:
                return await asyncio.wait_for(self.requests.get(), timeout)
            except TimeoutError:
                return None

        async def answer(self, key: int, reply: Any) -> None:
            future = self.replies.pop(key, None)
            if future is not None and not future.done():
                future.set_result(reply)

    return Broker


class RayChannel(_ServedChannel):
    """A Ray actor in the middle: tasks `ask` it; the client takes requests with `next` and `answer`s."""

    def __init__(self, handler: Handler) -> None:
        import ray

        self.ray, self.handler = ray, handler
        self.broker = _broker_class().remote()
        self.caller = RayCaller(self.broker)
        self._start("gridrun-ray-channel")

    def _next(self) -> tuple[Any, Any] | None:
        return self.ray.get(self.broker.next.remote(0.5))

    def _answer(self, key: Any, reply: Any) -> None:
        self.broker.answer.remote(key, reply)

    def close(self) -> None:
        super().close()
        try:
            self.ray.kill(self.broker)
        except Exception:  # noqa: BLE001
            pass
