"""A broker process for the side-by-side scripts: started on a free loopback port, pinned to
CPU 0 (as compare.sh pins its servers), stopped when the `with` block ends.

    with PinnedServer(["target/release/ringnats"], extra_args) as server:
        ... server.port, server.pid ...
"""
import socket
import subprocess
import time

SERVER_CPU = "0"
START_TIMEOUT_S = 10


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PinnedServer:
    def __init__(self, command, extra_args=(), stop_timeout_s=5):
        self.command = list(command)
        self.extra_args = list(extra_args)
        self.stop_timeout_s = stop_timeout_s
        self.port = free_port()
        self.process = None

    @property
    def pid(self):
        return self.process.pid

    def __enter__(self):
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *self.command, *self.extra_args,
             "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.command[0]} not listening on {self.port} after {START_TIMEOUT_S} s")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return False
