"""Reading bags with the MCAP project's own Python reader and ROS 2 decoder (packages `mcap` and
`mcap-ros2-support`): an independent check of what rosbags writes and reads."""
from __future__ import annotations

from pathlib import Path


def mcap_messages(path: Path) -> dict[str, list]:
    """topic -> decoded messages (in file order) of one .mcap file."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list] = {}
    with Path(path).open("rb") as f:
        for _, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            out.setdefault(channel.topic, []).append(msg)
    return out


def to_sqlite3(src: Path, dst: Path) -> None:
    """Rewrite a bag with the sqlite3 storage plugin (rosbags)."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    from despite_core.data.rosbag import typestore

    store = typestore()
    with AnyReader([src], default_typestore=store) as r, Writer(dst, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=store) for c in r.connections}
        for c, t, raw in r.messages():
            w.write(conns[c.id], t, raw)
