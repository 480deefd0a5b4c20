"""Calling the server's named endpoints by widget label (their parameters are positional), with tiny, fast
values, as an outsider with gradio_client would."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from struct import pack

import httpx
from gradio_client import Client, handle_file
from PIL import Image

FAST = {"Sampling steps": 1, "Width": 64, "Height": 64, "Prompt": "a cat"}


def named_endpoints(client: Client) -> dict[str, list[dict]]:
    info = client.view_api(return_format="dict", print_info=False)
    return {name: endpoint["parameters"] for name, endpoint in info["named_endpoints"].items()}


def is_text(param: dict) -> bool:
    """A parameter sent as a string: free text, or a choice (a name) the server must check."""
    kind = param["python_type"]["type"]
    return kind == "str" or kind.startswith("Literal[")


def arguments(params: list[dict], image: Path, **by_label) -> list:
    """Every parameter's default, the FAST values, an image for every image input, and `by_label` overrides (each
    for the first parameter with that label; the ControlNet units repeat theirs)."""
    overrides = {**FAST, **by_label}
    values = []
    for param in params:
        label = param.get("label")
        if label in overrides:
            values.append(overrides.pop(label))
        elif param["component"] == "Image":
            values.append(handle_file(str(image)))
        elif param["component"] == "Imageeditor":
            values.append({"background": handle_file(str(image)), "layers": [], "composite": handle_file(str(image))})
        else:
            values.append(param["parameter_default"])
    return values


def small_png(path: Path) -> Path:
    Image.new("RGB", (64, 64), (120, 90, 60)).save(path)
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid grey PNG of side×side pixels (400 MB decoded) in a few hundred KB: rows of zeros compress ~1000×.
    Written chunk by chunk, so making it costs the test no memory either."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return pack(">I", len(body)) + kind + body + pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def reset_peak_memory(pid: int) -> None:
    """Restarts the process's peak-memory count (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_resident_mb(pid: int) -> float:
    """The most memory the process has held since the last reset (VmHWM), in MB: a spike freed again still shows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def dependency(config: dict, api_name: str) -> dict:
    """The page's event listener of that api_name (private ones included), from the server's /config."""
    return next(d for d in config["dependencies"] if d.get("api_name") == api_name)


def widget_defaults(config: dict, listener: dict) -> list:
    """The values the page would send for that listener's inputs before anything is touched."""
    components = {c["id"]: c for c in config["components"]}
    return [components[i].get("props", {}).get("value") for i in listener["inputs"]]


def join_queue(url: str, fn_index: int, data: list, session: str, headers: dict | None = None) -> httpx.Response:
    """One crafted POST to Gradio's queue, as a script would send it without gradio_client."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    return httpx.post(url + "gradio_api/queue/join", json=body, headers=headers or {}, timeout=30)


def completed(url: str, session: str, headers: dict | None = None, count: int = 1, timeout: float = 120) -> list[dict]:
    """The first `count` process_completed messages of the session's event stream."""
    messages = []
    address = url + f"gradio_api/queue/data?session_hash={session}"
    with httpx.stream("GET", address, headers=headers or {}, timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    messages.append(message)
                    if len(messages) == count:
                        break
    return messages
