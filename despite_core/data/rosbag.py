"""rosbag2 support without a ROS install: the `rosbags` typestore with despite_ros's messages, and
reading any rosbag2 bag (MCAP or sqlite3, a directory or a single file) message by message,
including an MCAP file whose end was cut off; writing in rosbag2's layouts (:class:`BagWriter`).
Used by `despite synth --bag` and `bag-eval --record` (writing), bag-eval and importers (reading); no rclpy.

The message definitions are read from the package's ``msg/*.msg`` files (the single source of
truth), found in the install prefix (``share/despite_ros/msg``, where CMake and setup.py put
them), on ``AMENT_PREFIX_PATH``, or in the source tree.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from despite_core.install import SOURCE_ROOT, install_prefixes
from despite_core.runtime.bundle import hash_file



class BagError(ValueError):
    """The bag cannot be read as asked; the message says why and what is there."""


MESSAGES = ("PersonActivity", "ActivityArray", "Embedding", "MatchScore", "MatchArray", "ActivityEvent")


def msg_dir() -> Path:
    """Directory holding despite_ros's .msg files; a clear error when none is found."""
    candidates = [p / "share" / "despite_ros" / "msg" for p in install_prefixes()] + [SOURCE_ROOT / "msg"]
    for c in candidates:
        if all((c / f"{m}.msg").is_file() for m in MESSAGES):
            return c
    raise FileNotFoundError(
        "despite_ros message definitions (msg/*.msg) not found; looked in: "
        + ", ".join(str(c) for c in candidates) + ". Install the package (make install / colcon build).")


@lru_cache(maxsize=1)
def typestore() -> Any:
    """A ROS 2 Jazzy typestore with despite_ros/msg/* registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    d = msg_dir()
    types: dict = {}
    for name in MESSAGES:
        types.update(get_types_from_msg((d / f"{name}.msg").read_text(), f"despite_ros/msg/{name}"))
    store.register(types)
    return store


def to_time(store: Any, seconds: float) -> Any:
    """builtin_interfaces/Time from seconds."""
    sec = math.floor(seconds)
    nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return store.types["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=nanosec)


def to_seconds(stamp: Any) -> float:
    """Seconds from a Time message (rosbags or rclpy)."""
    return stamp.sec + stamp.nanosec * 1e-9


def to_nanoseconds(seconds: float) -> int:
    return int(round(seconds * 1e9))


GT_TOPIC = "/ground_truth/activities"     # despite_ros/ActivityArray of the true labels (despite synth writes it)
DEFAULT_POINTS_TOPIC = "/lidar/points"
DEFAULT_IMU_TOPIC = "/{wearer}/imu/{site}"


def imu_pattern(pattern: str):
    """The regular expression of an Imu topic pattern with ``{wearer}`` and ``{site}``."""
    import re

    if pattern.count("{wearer}") != 1 or pattern.count("{site}") != 1:
        raise BagError(f"--imu-topic {pattern!r}: the pattern needs {{wearer}} and {{site}} once each, e.g. "
                       "/{wearer}/imu/{site}")
    rx = re.escape(pattern).replace(re.escape("{wearer}"), "(?P<wearer>[^/]+)").replace(re.escape("{site}"),
                                                                                       "(?P<site>[^/]+)")
    return re.compile(f"^{rx}$")


def wearers_in(reader, pattern: str) -> set[str]:
    """Wearers that have at least one sensor_msgs/Imu topic matching the pattern in the bag."""
    rx = imu_pattern(pattern)
    return {m.group("wearer") for c in reader.connections
            if c.msgtype == "sensor_msgs/msg/Imu" and (m := rx.match(c.topic))}


def topic_listing(reader) -> str:
    """The bag's topics with their types, for error messages ("none" for an empty bag)."""
    present = {c.topic: c.msgtype for c in reader.connections}
    return ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"


@dataclass
class _Connection:
    id: int
    topic: str
    msgtype: str
    msgcount: int


_MCAP_CHUNK = 0x06


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    """A chunk's records, decompressed by the MCAP library (zstd, lz4 or none)."""
    from mcap.records import Chunk
    from mcap.stream_reader import get_chunk_data_stream

    stream, length = get_chunk_data_stream(Chunk(compression=compression, data=data, message_start_time=0,
                                                 message_end_time=0, uncompressed_crc=0, uncompressed_size=size))
    return bytes(stream.read(length))


def add_chunk_crcs(path: Path) -> int:
    """Fill in the CRC-32 of every chunk's uncompressed records of an MCAP file (rosbags writes 0,
    "not computed"), in place: the 4 bytes are patched where they are, no offset moves, so the
    file's indexes stay valid. Returns the number of chunks."""
    import struct
    import zlib

    n = 0
    with open(path, "r+b") as f:
        if f.read(8) != b"\x89MCAP0\r\n":
            raise BagError(f"{path}: not an MCAP file")
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            op, length = head[0], struct.unpack("<Q", head[1:])[0]
            start = f.tell()
            if op == _MCAP_CHUNK:
                body = f.read(length)
                size = struct.unpack_from("<Q", body, 16)[0]
                clen = struct.unpack_from("<I", body, 28)[0]
                compression = body[32:32 + clen].decode()
                rlen = struct.unpack_from("<Q", body, 32 + clen)[0]
                records = body[40 + clen:40 + clen + rlen]
                crc = zlib.crc32(_decompress(compression, records, size)) & 0xFFFFFFFF
                f.seek(start + 24)
                f.write(struct.pack("<I", crc))
                n += 1
            f.seek(start + length)
            if op == 0x02:                                   # footer: the end
                break
    return n


class McapStream:
    """An MCAP file read record by record (the `mcap` package): every chunk's CRC-32 is checked and a
    corrupt chunk is counted (:attr:`corrupt_chunks`) and skipped, never decoded as data; a file whose
    end is missing (a recording cut off) is read up to the cut and :attr:`truncated` says where it
    stopped. The same interface as the part of rosbags' AnyReader that the bag tools use."""

    def __init__(self, path: Path) -> None:
        from mcap.records import Channel, Message, Schema

        self.path = path
        self.truncated: str | None = None
        self.corrupt_chunks = 0
        schemas, channels, counts = {}, {}, {}
        self.start_time, self.end_time = None, None
        for r in self._records():
            if isinstance(r, Schema):
                schemas[r.id] = r.name
            elif isinstance(r, Channel):
                channels[r.id] = (r.topic, r.schema_id)
            elif isinstance(r, Message):
                counts[r.channel_id] = counts.get(r.channel_id, 0) + 1
                self.start_time = r.log_time if self.start_time is None else min(self.start_time, r.log_time)
                self.end_time = r.log_time if self.end_time is None else max(self.end_time, r.log_time)
        if self.start_time is None:
            raise BagError(f"{path}: cannot read the bag: no message could be read ({self.truncated or 'empty'})")
        self.connections = [_Connection(cid, topic, schemas.get(sid, "unknown"), counts.get(cid, 0))
                            for cid, (topic, sid) in channels.items()]

    def _records(self):
        from mcap.reader import breakup_chunk
        from mcap.records import Chunk
        from mcap.stream_reader import StreamReader

        bad = 0
        with self.path.open("rb") as f:
            try:
                for r in StreamReader(f, emit_chunks=True).records:
                    if not isinstance(r, Chunk):
                        yield r
                        continue
                    try:                                # CRC checked (where written) and records parsed
                        records = breakup_chunk(r, validate_crc=True)
                    except Exception:  # a CRC mismatch or a damaged compressed stream: a corrupt chunk
                        bad += 1
                        continue
                    yield from records
            except Exception as e:  # the cut: EndOfFile or a damaged last record
                self.truncated = f"{type(e).__name__} after the last complete record"
        self.corrupt_chunks = max(self.corrupt_chunks, bad)

    def messages(self, connections=None):
        from mcap.records import Message

        wanted = {c.id: c for c in (connections if connections is not None else self.connections)}
        for r in self._records():
            if isinstance(r, Message) and r.channel_id in wanted:
                yield wanted[r.channel_id], r.log_time, r.data

    def deserialize(self, raw, msgtype: str):
        return typestore().deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        pass


class BagWriter:
    """A new MCAP bag in rosbag2's own layouts (rosbags' writer underneath, no ROS install):

    - ``NAME`` (a directory): ``NAME/NAME_0.mcap`` and ``metadata.yaml``, as ``ros2 bag record -o NAME``
      writes it (``ros2 bag info NAME`` / ``ros2 bag play NAME``);
    - ``NAME.mcap``: that single MCAP file, no metadata (``ros2 bag play NAME.mcap`` on Jazzy, or any
      MCAP tool).

    ``compress``: zstd chunk compression (MCAP's own, readable by every MCAP reader). Use as a context
    manager; on an error the partial bag is removed."""

    def __init__(self, path: str | Path, *, compress: bool = True, overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        self.path = Path(path)
        self.single = self.path.suffix == ".mcap"
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{self.path}: exists already (a new bag is written here; remove it or overwrite)")
            _remove(self.path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"{self.path.parent}: no such directory for the bag")
        self.dir = self.path.with_name(f".{self.path.name}.partial") if self.single else self.path
        if self.single and self.dir.exists():
            _remove(self.dir)
        self.writer = Writer(self.dir, version=9, storage_plugin=StoragePlugin.MCAP)
        if compress:
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()

    def add_connection(self, topic: str, msgtype: str):
        return self.writer.add_connection(topic, msgtype, typestore=typestore())

    def write(self, connection, timestamp_ns: int, raw: bytes) -> None:
        self.writer.write(connection, int(timestamp_ns), raw)

    def close(self) -> None:
        import yaml

        self.writer.close()
        written = self.dir / f"{self.dir.name}.mcap"
        add_chunk_crcs(written)
        if self.single:
            written.replace(self.path)
            _remove(self.dir)
            return
        final = self.dir / f"{self.dir.name}_0.mcap"
        written.replace(final)
        meta_path = self.dir / "metadata.yaml"
        meta = yaml.safe_load(meta_path.read_text())
        info = meta["rosbag2_bagfile_information"]
        info["relative_file_paths"] = [final.name]
        for f in info.get("files") or []:
            f["path"] = final.name
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))

    def abort(self) -> None:
        try:
            self.writer.close()
        except Exception:  # already broken: the partial bag goes anyway
            pass
        _remove(self.dir)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def open_bag(path: Path):
    """A rosbags AnyReader over the bag (MCAP or sqlite3) with despite_ros's types; an MCAP file
    whose end was cut off is read record by record up to the cut (:class:`McapStream`)."""
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"{path}: bag not found")
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path] if path.suffix == ".mcap" else []
    if len(files) == 1:
        # one MCAP file (our layouts, ros2 bag record without splitting): read record by record so
        # that every chunk's CRC is checked and a corrupt chunk is skipped, not decoded as data
        try:
            return McapStream(files[0])
        except BagError:
            raise
        except Exception as e:  # not even a readable start
            raise BagError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
        return reader
    except Exception as e:  # rosbags raises several reader errors for broken bags
        raise BagError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None


def iter_messages(reader, topics: set[str], counts: dict):
    """(topic, log time ns, message) in bag order; messages that cannot be decoded are counted, and
    the reader's faults (:func:`reader_faults`) are added to ``counts`` at the end, also when the
    caller stops early (close the generator, or use ``contextlib.closing``)."""
    conns = [c for c in reader.connections if c.topic in topics]
    try:
        for conn, t, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # an unknown or corrupt message: skipped and counted
                counts["undecodable"] = counts.get("undecodable", 0) + 1
                continue
            yield conn.topic, t, msg
    except Exception as e:  # a truncated final chunk: keep what was read
        counts["truncated"] = f"{type(e).__name__}: {e}"
    finally:
        reader_faults(reader, counts)


def reader_faults(reader, counts: dict) -> dict:
    """Add what the reader met in the whole file to ``counts``: ``truncated`` (where a cut-off file
    stopped) and ``corrupt_chunks`` (chunks whose CRC failed, skipped; :class:`McapStream` checks
    every chunk when the bag is opened, so the count is complete however little is read)."""
    if getattr(reader, "truncated", None):
        counts["truncated"] = reader.truncated
    if getattr(reader, "corrupt_chunks", 0):                 # chunks whose CRC failed: skipped, counted
        counts["corrupt_chunks"] = max(counts.get("corrupt_chunks", 0), reader.corrupt_chunks)
    return counts


def bag_sha256(path: Path) -> str:
    """sha256 over the bag's files (a directory: its files in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        hash_file(h, f)
    return h.hexdigest()
