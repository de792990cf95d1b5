"""The ollama image's environment for the /bin/ollama stand-in: HOME as Docker sets it, port 11434.

Loaded by tests/contract/container_app.py in kaia's Ollama container app before its main.py,
which starts ``/bin/ollama serve`` (chara's ``ollama_serve.py``, mapped by ``ollama.files.json``)
with this process's environment. Two things a Docker container would give it are set here:

* ``HOME``. Ollama keeps its models in ``$HOME/.ollama/models``. kaia's controller mounts the
  decider's ``main`` resource folder at ``/home/ubuntu/.ollama`` and runs the container with
  ``--user <uid>:<gid>`` of the BrainBox host; Docker then takes HOME from the image's
  ``/etc/passwd``, where uid 1000 is ``ubuntu`` (``/home/ubuntu``) on the Ubuntu 24.04 base of
  ``ollama/ollama``. So kaia's layout assumes a host user of uid 1000, and the contract harness
  runs the container as that user would (the Docker stand-in passes the host's HOME on). On a
  host where BrainBox runs as root, real Docker gives HOME=/root: Ollama's models would then not
  be in the mounted folder.
* Port 11434, which the controller publishes on the host: taken, ``docker run`` would fail;
  here the container stops at once with a message naming the port.
"""

import os
import socket
import sys

OLLAMA_HOME = "/home/ubuntu"
OLLAMA_PORT = 11434


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the server will: a port in TIME_WAIT is free, only a listening socket holds it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__.startswith("chara_contract_standin_"):  # loaded in the container, not by a test
    os.environ["HOME"] = OLLAMA_HOME
    if not _port_is_free(OLLAMA_PORT):
        sys.exit(
            f"Error: port {OLLAMA_PORT} on 127.0.0.1 is already taken (kaia's Ollama controller "
            "publishes it on the host; chara's Ollama stand-in listens on it): stop what holds it"
        )
