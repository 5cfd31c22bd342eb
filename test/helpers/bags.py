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


def rewrite_bag(src: Path, dst: Path, edit=None, topics: set[str] | None = None) -> None:
    """A copy of bag ``src`` as a new bag ``dst`` (BagWriter: chunk CRCs, rosbag2 layout): every
    message of ``topics`` (default: all), or what ``edit(topic, log_ns, raw, k)`` returns in its
    place, [(log_ns, raw), ...] (``k``: the message's index on its topic; [] drops it)."""
    from despite_core.data.rosbag import BagWriter, open_bag

    reader = open_bag(Path(src))
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        seen: dict[str, int] = {}
        with BagWriter(dst) as w:
            out = {c.id: w.add_connection(c.topic, c.msgtype) for c in conns}
            for c, t, raw in reader.messages(connections=conns):
                k = seen[c.topic] = seen.get(c.topic, -1) + 1
                for t2, raw2 in (edit(c.topic, t, bytes(raw), k) if edit is not None else [(t, bytes(raw))]):
                    w.write(out[c.id], t2, raw2)
    finally:
        reader.close()


def edit_cdr(raw: bytes, msgtype: str, change) -> bytes:
    """``raw`` (CDR) decoded with despite's typestore, ``change(msg)`` -> a new message, re-encoded."""
    from despite_core.data.rosbag import typestore

    store = typestore()
    return bytes(store.serialize_cdr(change(store.deserialize_cdr(raw, msgtype)), msgtype))


def mcap_chunks(path: Path) -> list[tuple[int, int]]:
    """(content offset, length) of every chunk record of an MCAP file."""
    import struct

    out, data = [], Path(path).read_bytes()
    pos = 8
    while pos + 9 <= len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x06:
            out.append((pos + 9, length))
        if op == 0x02:
            break
        pos += 9 + length
    return out


def flip_bit_in_chunk(path: Path, which: int | None = None) -> None:
    """Bit rot: one bit flipped in the middle of chunk ``which`` (default: the middle chunk), in place."""
    chunks = mcap_chunks(path)
    off, length = chunks[len(chunks) // 2 if which is None else which]
    data = bytearray(Path(path).read_bytes())
    data[off + length // 2] ^= 0x40
    Path(path).write_bytes(bytes(data))
