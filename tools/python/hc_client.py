"""A small Python client for HybridCache's ChatService (grpcio).

Stubs are generated from the repository's proto/ at import time with Debian's
protoc and grpc_python_plugin, which shows the API works from any language
with nothing but the .proto files.

    from hc_client import Client
    chat = Client("127.0.0.1:50051")
    turn = chat.send("my-conversation", "Hello!", max_tokens=32)
    print(turn.text, turn.cached_tokens, turn.ttft_s)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRPC_PROTO_DIR = "/usr/share/grpc-proto"


def generate_stubs(proto_dir=os.path.join(REPO, "proto")):
    """Generates the Python stubs of chat, worker and health protos; returns the dir.

    Debian's protoc is used rather than the one bundled in its grpc_tools,
    which is too old for proto3 `optional`. grpc/health/v1/health.proto is
    compiled from a copy under hc_health/ so the generated package does not
    shadow grpcio's own `grpc` package (the service stays grpc.health.v1.Health).
    """
    out = tempfile.mkdtemp(prefix="hc-stubs-")
    health_dir = os.path.join(out, "protos", "hc_health", "v1")
    os.makedirs(health_dir)
    shutil.copy(os.path.join(GRPC_PROTO_DIR, "grpc/health/v1/health.proto"), health_dir)
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", f"-I{proto_dir}", f"-I{os.path.join(out, 'protos')}",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={plugin}",
                    "hybridcache/v1/chat.proto", "hybridcache/v1/worker.proto",
                    "hc_health/v1/health.proto"], check=True)
    sys.path.insert(0, out)
    return out


generate_stubs()
import grpc  # noqa: E402
from hybridcache.v1 import chat_pb2, chat_pb2_grpc  # noqa: E402


@dataclass
class Turn:
    round: int = 0
    worker_id: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    token_ids: list = field(default_factory=list)
    text: str = ""
    finish_reason: str = ""
    ttft_s: float = 0.0         # request sent -> first token received
    commit_s: float = 0.0       # last token -> TurnCompleted (worker publish + ledger commit)
    total_s: float = 0.0


class Client:
    def __init__(self, address, timeout=120.0):
        self.channel = grpc.insecure_channel(address)
        self.stub = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.timeout = timeout

    def complete(self, conversation_id, messages=(), suffix_token_ids=(), salt="", **sampling):
        """Runs one turn. `messages` are (role, content) pairs. Raises grpc.RpcError."""
        req = chat_pb2.CompleteRequest(conversation_id=conversation_id, cache_salt=salt)
        for role, content in messages:
            req.messages.add(role=role, content=content)
        req.suffix_token_ids.extend(suffix_token_ids)
        for k, v in sampling.items():
            if k == "expected_round":
                req.expected_round = v
            elif k in ("stop", "stop_token_ids"):
                getattr(req.sampling, k).extend(v)
            else:
                setattr(req.sampling, k, v)
        turn = Turn()
        start = last = time.monotonic()
        for ev in self.stub.Complete(req, timeout=self.timeout):
            now = time.monotonic()
            kind = ev.WhichOneof("event")
            if kind == "started":
                turn.round, turn.worker_id = ev.started.round, ev.started.worker_id
                turn.prompt_tokens, turn.cached_tokens = ev.started.prompt_tokens, ev.started.cached_tokens
            elif kind == "chunk":
                if not turn.token_ids:
                    turn.ttft_s = now - start
                turn.token_ids.extend(ev.chunk.token_ids)
                turn.text += ev.chunk.text
                last = now
            elif kind == "completed":
                turn.finish_reason = ev.completed.finish_reason
                turn.round = ev.completed.committed_round
                turn.commit_s = now - last
        turn.total_s = time.monotonic() - start
        return turn

    def send(self, conversation_id, text, role="user", **sampling):
        return self.complete(conversation_id, messages=[(role, text)], **sampling)

    def get(self, conversation_id, salt=""):
        return self.stub.GetConversation(chat_pb2.GetConversationRequest(
            conversation_id=conversation_id, cache_salt=salt))

    def delete(self, conversation_id, salt=""):
        return self.stub.DeleteConversation(chat_pb2.DeleteConversationRequest(
            conversation_id=conversation_id, cache_salt=salt))
