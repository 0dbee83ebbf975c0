"""Chunked, bounded-memory reading of Databento DBN files (v1, v2, v3; ``.dbn`` or ``.dbn.zst``).

``databento.DBNStore`` parses the metadata header and gives the record dtype of the file's schema and DBN
version. The records themselves are streamed here rather than through ``DBNStore.to_ndarray(count=...)``
because that iterator stops silently at a truncated zstd frame (it only warns for a partial record in an
uncompressed file); a truncated download must be an error that names the file and the record offset.
Chunks are read-only ``np.frombuffer`` views of the decompressed bytes, exactly what ``to_ndarray`` yields,
and the sha256 of the file on disk is computed in the same pass (for manifests), unless a sidecar
``<file>.sha256.json`` written when the file was made (``volfast download``, ``volfast synth``) still
matches the file's size and modification time: input files do not change, so one hash per file suffices.
Large compressed files are read with O_DIRECT by an I/O thread (:class:`_DirectReader`): a year of data does
not stay in the page cache, and filling it costs the reading process more CPU than the disk read itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import struct
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from volfast.errors import VolfastError

__all__ = [
    "DBNFile",
    "DBNFileInfo",
    "DBNReadError",
    "DayFiles",
    "IngestWarning",
    "QUOTE_SCHEMAS",
    "dataset_from_filename",
    "dbn_file_info",
    "find_day_files",
    "list_dates",
    "read_sha256_sidecar",
    "scan_folder",
    "write_sha256_sidecar",
]

#: Top-of-book schemas the snapshot accepts, finest first (the order used to pick one per day).
QUOTE_SCHEMAS: tuple[str, ...] = (
    "mbp-1",
    "cmbp-1",
    "cbbo-1s",
    "bbo-1s",
    "cbbo-1m",
    "bbo-1m",
    "tbbo",
    "tcbbo",
)
#: Schemas whose records are already consolidated across venues.
CONSOLIDATED_SCHEMAS = frozenset({"cmbp-1", "cbbo-1s", "cbbo-1m", "tcbbo"})

#: Compressed bytes per read: large enough to amortise calls, small enough that a decompressed block
#: (about 2.3x for mbp-1) is still in cache when the consumer reads it.
_READ_BYTES = 1 << 18
#: ... and while looking for the end of the metadata header (a small file is not decompressed whole).
_HEADER_READ_BYTES = 1 << 15
#: Decompressed blocks the background reader may hold ahead of the consumer.
_QUEUE_BLOCKS = 8
#: Compressed files at least this large are decompressed by a background thread; below it the thread's
#: start-up costs more than it hides.
_BACKGROUND_MIN_BYTES = 1 << 21
#: A block shorter than this that follows a cut record is joined to it (one copy) rather than viewed.
_SMALL_BLOCK = 1 << 16
#: Compressed files at least this large are read with O_DIRECT by an I/O thread (see :class:`_DirectReader`),
#: in reads of _DIRECT_BYTES into _DIRECT_BUFFERS reusable page-aligned buffers.
_DIRECT_MIN_BYTES = 1 << 22
_DIRECT_BYTES = 1 << 20
_DIRECT_BUFFERS = 4
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DBNReadError(VolfastError, ValueError):
    """A DBN file cannot be read: missing, corrupt, truncated, or not what the caller needs.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    record_offset : int or None
        Index (0-based, counting records after the metadata header) of the first record that could not be
        read, where one applies.
    reason : str
        The message without the file and offset.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, record_offset: int | None = None) -> None:
        self.path = Path(path)
        self.record_offset = record_offset
        self.reason = message
        where = f" at record {record_offset}" if record_offset is not None else ""
        super().__init__(f"{self.path}{where}: {message}", where=f"{self.path}{where}")


class IngestWarning(UserWarning):
    """Data problems that do not stop a run (missing definitions, empty window, cut outside the session)."""


@dataclass
class DBNFile:
    """An opened DBN file: its metadata now, its records chunk by chunk on demand.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.dbn`` or ``.dbn.zst`` file of any DBN version the installed ``databento`` reads.

    Raises
    ------
    DBNReadError
        If the file is missing, empty, not DBN, or its header cannot be decoded.
    """

    path: Path
    store: Any = field(repr=False)
    compressed: bool
    size_bytes: int
    mtime_ns: int
    sha256: str | None = None  # from a valid sidecar, else set once iter_chunks has streamed the file

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DBNReadError(self.path, "no such file")
        st = self.path.stat()
        self.size_bytes, self.mtime_ns = st.st_size, st.st_mtime_ns
        if self.size_bytes == 0:
            raise DBNReadError(self.path, "empty file")
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
        self.compressed = magic == _ZSTD_MAGIC
        if not self.compressed and magic[:3] != b"DBN":
            raise DBNReadError(self.path, "not a DBN file (neither a DBN nor a zstd signature)")
        self.sha256 = read_sha256_sidecar(self.path)  # None: computed while the file is streamed
        self._hash_on_read = self.sha256 is None
        self._verify_error: DBNReadError | None = None
        header = self._read_header()
        self._header_bytes = header
        # The store is built from the header bytes alone: it parses the metadata and knows the record dtype of
        # the file's schema and DBN version, and holds no file handle (DBNStore.from_file leaves one per
        # reader to the garbage collector).
        import databento as db

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.store = db.DBNStore.from_bytes(io.BytesIO(header))
                # DBNStore decodes its header again on every .metadata access (~2 ms with 5k symbols): once.
                self._metadata = self.store.metadata
                s = self.store.schema
                self._schema = None if s is None else str(s.value if hasattr(s, "value") else s)
                self._dtype: np.dtype[Any] | None = (
                    None if self._schema is None else self.store.to_ndarray().dtype
                )
        except Exception as exc:  # databento raises BentoError, ValueError, pyo3 errors...
            raise DBNReadError(self.path, f"unreadable DBN metadata ({type(exc).__name__}: {exc})") from exc

    def _read_header(self) -> bytes:
        buf = bytearray()
        blocks = self._decompressed_blocks(hash_bytes=False, read_bytes=_HEADER_READ_BYTES)
        try:
            for block in blocks:
                buf += block
                if len(buf) >= 8:
                    if bytes(buf[:3]) != b"DBN":
                        raise DBNReadError(
                            self.path, "not a DBN stream (no DBN signature after decompression)"
                        )
                    need = 8 + struct.unpack_from("<I", buf, 4)[0]
                    if len(buf) >= need:
                        return bytes(buf[:need])
        finally:
            blocks.close()  # closes the file now, not at garbage collection
        raise DBNReadError(self.path, "file ends inside the metadata header", 0)

    # -- metadata ----------------------------------------------------------------------------------
    @property
    def metadata(self) -> Any:
        """The ``databento_dbn.Metadata`` header."""
        return self._metadata

    @property
    def schema(self) -> str | None:
        """Schema name (``"mbp-1"``, ``"definition"``...) or None for a mixed-schema file."""
        return self._schema

    @property
    def dataset(self) -> str:
        return str(self.metadata.dataset)

    @property
    def version(self) -> int:
        return int(self.metadata.version)

    @property
    def start_ns(self) -> int:
        """Query start from the header, UTC nanoseconds."""
        return int(self.metadata.start)

    @property
    def end_ns(self) -> int | None:
        """Query end from the header, UTC nanoseconds (None when open-ended)."""
        end = self.metadata.end
        return None if end is None or int(end) >= 2**64 - 1 else int(end)

    def describe(self) -> dict[str, Any]:
        """Name, size, sha256 (if streamed), dataset, schema and version, for manifests."""
        return {
            "name": self.path.name,
            "size": self.size_bytes,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256 if self.sha256 is not None else file_sha256(self.path),
            "dataset": self.dataset,
            "schema": self.schema,
            "dbn_version": self.version,
        }

    def require(self, *, schemas: tuple[str, ...] | None = None, dataset: str | None = None) -> None:
        """Raise :class:`DBNReadError` unless the file has one of ``schemas`` and the given ``dataset``."""
        if schemas is not None and self.schema not in schemas:
            raise DBNReadError(self.path, f"schema is {self.schema!r}; expected one of {', '.join(schemas)}")
        m = _DAY_FILE.match(self.path.name)
        if m is not None and self.schema is not None and m["schema"] != self.schema:
            raise DBNReadError(
                self.path, f"file name says schema {m['schema']} but its metadata says {self.schema}"
            )
        if dataset is not None and self.dataset != dataset:
            raise DBNReadError(self.path, f"dataset is {self.dataset!r}; expected {dataset!r}")

    # -- records -----------------------------------------------------------------------------------
    def record_dtype(self) -> np.dtype[Any] | None:
        """The numpy dtype ``DBNStore.to_ndarray`` uses for this file (None when it holds no records)."""
        # With no records after the header, to_ndarray returned an empty array of the file's record dtype.
        return self._dtype

    def iter_chunks(
        self, count: int = 1 << 16, *, schema: str | None = None
    ) -> Generator[np.ndarray, None, None]:
        """Yield read-only structured arrays of at most ``count`` records, in file order.

        Chunks are zero-copy ``np.frombuffer`` views of the decompressed blocks (about 0.6 MiB each for
        an mbp-1 ``.dbn.zst`` file), so a chunk may hold fewer than ``count`` records; a record that straddles
        two blocks is copied into a one-record chunk of its own unless the next block is small. Files of at
        least 2 MiB are decompressed by a background thread (zstd and sha256 release the GIL), at most
        ``_QUEUE_BLOCKS`` blocks ahead of the consumer, so decompression overlaps with whatever the caller
        does with each chunk; with ``VOLFAST_NUM_THREADS=1`` (as ``volfast build`` sets in each worker of a
        pool that has one core per worker) everything runs in the calling thread, so workers never
        oversubscribe the cores.

        Parameters
        ----------
        count : int
            Most records per chunk (memory is about ``_QUEUE_BLOCKS + 1`` decompressed blocks plus the chunks
            the caller keeps).
        schema : str, optional
            Only for mixed-schema files (live captures): which record type to keep.

        Raises
        ------
        DBNReadError
            On a truncated file, an incomplete zstd frame, corrupt compressed data, or a record whose
            length/rtype header does not match the schema; the message gives the record offset.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if self.schema is None:
            yield from self._iter_mixed(count, schema)
            return
        dtype = self.record_dtype()
        assert dtype is not None
        itemsize = dtype.itemsize
        tag: int | None = None  # expected (length | rtype << 8) of every record, from the first record
        done = 0  # records yielded so far
        head = bytearray()  # the first bytes of the stream, until the metadata length is known
        skip: int | None = None  # metadata bytes still to skip (None: not known yet)
        carry = b""  # the start of a record cut by the end of the previous block
        background = self.compressed and self.size_bytes >= _BACKGROUND_MIN_BYTES and not _one_thread()
        self._verify_error = None
        blocks = (
            self._background_blocks()
            if background
            else self._decompressed_blocks(self._hash_on_read, verify=True)
        )
        try:
            while True:
                try:
                    block: bytes | memoryview = next(blocks)
                except StopIteration:
                    break
                except DBNReadError as exc:  # give the zstd error the record offset it happened at
                    raise DBNReadError(self.path, exc.reason, done if skip == 0 else 0) from exc
                if skip is None:
                    if head or len(block) < 8:  # rare: the first block is shorter than the 8-byte prelude
                        head += block
                        if len(head) < 8:
                            continue
                        block, head = bytes(head), bytearray()
                    if block[:3] != b"DBN":
                        raise DBNReadError(self.path, "missing DBN signature after decompression")
                    skip = 8 + struct.unpack_from("<I", block, 4)[0]
                if skip:
                    k = min(skip, len(block))
                    skip -= k
                    block = memoryview(block)[k:]
                    if skip:
                        continue
                pieces: list[tuple[bytes | memoryview, int]] = []
                if carry:
                    need = itemsize - len(carry)
                    if len(block) < _SMALL_BLOCK:  # small: one cheap copy, no extra chunk
                        block = carry + bytes(block)
                    else:  # large: the straddling record alone, then the rest of the block as views
                        pieces.append((carry + bytes(block[:need]), 1))
                        block = memoryview(block)[need:]
                n = len(block) // itemsize
                pieces.append((block, n))
                for buf, k in pieces:
                    for arr in self._views(buf, k, count, dtype, tag, done):
                        tag = _record_tag(arr) if tag is None else tag
                        yield arr
                        done += len(arr)
                carry = bytes(block[n * itemsize :])
        finally:
            blocks.close()  # stops the background thread and closes the file on an early exit
            if self._verify_error is not None:  # the frame cut short by an early exit is damaged
                err, self._verify_error = self._verify_error, None
                raise err
        if skip is None or skip:
            raise DBNReadError(self.path, "file ends inside the metadata header", 0)
        if carry:
            raise DBNReadError(
                self.path,
                f"truncated: {len(carry)} stray bytes after {done} complete records "
                f"({itemsize}-byte {self.schema} records)",
                done,
            )

    def _views(
        self,
        buf: bytes | memoryview,
        n: int,
        count: int,
        dtype: np.dtype[Any],
        tag: int | None,
        done: int,
    ) -> Iterator[np.ndarray]:
        """The first ``n`` records of ``buf`` as read-only views of at most ``count`` records, each checked:
        every record's length and rtype must be the schema's (``tag``; the first record's when None)."""
        itemsize = dtype.itemsize
        for off in range(0, n, count):
            k = min(count, n - off)
            arr = np.frombuffer(buf, dtype=dtype, count=k, offset=off * itemsize)
            # length (u8, in 32-bit words) and rtype (u8) are the first two bytes of every record header.
            hdr = np.ndarray((k,), dtype="<u2", buffer=arr, strides=(itemsize,))
            want = (itemsize // 4) | (int(hdr[0]) & 0xFF00 if tag is None else tag & 0xFF00)
            if tag is None:
                tag = want
                allowed = _rtype_of_schema(str(self.schema)) | _LEGACY_RTYPES.get(str(self.schema), set())
                if k and (want >> 8) not in allowed:
                    raise DBNReadError(
                        self.path,
                        f"record type {want >> 8:#04x} at byte {self._record_byte(done + off)} is not that "
                        f"of the schema in the metadata ({self.schema}: "
                        f"{', '.join(f'{r:#04x}' for r in allowed)})",
                        done + off,
                    )
            if (hdr != want).any():
                i = int(np.flatnonzero(hdr != want)[0])
                raise DBNReadError(
                    self.path,
                    f"corrupt record at byte {self._record_byte(done + off + i)} of the decompressed stream "
                    f"(length {int(arr['length'][i]) * 4} bytes, rtype "
                    f"{int(arr['rtype'][i]):#04x}; expected {itemsize}-byte {self.schema} records, "
                    f"rtype {want >> 8:#04x})",
                    done + off + i,
                )
            yield arr

    def _background_blocks(self) -> Generator[bytes, None, None]:
        """:meth:`_decompressed_blocks` run by a helper thread, at most ``_QUEUE_BLOCKS`` blocks ahead.

        Closing this generator (early exit, error, interrupt) stops the thread and waits for it, so the file
        is closed when the caller's loop ends.
        """
        import queue
        import threading

        q: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        stop = threading.Event()
        end = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            blocks = self._decompressed_blocks(self._hash_on_read, verify=True)
            try:
                for b in blocks:
                    if not put(b):
                        return
                put(end)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)
            finally:
                blocks.close()

        t = threading.Thread(target=produce, name=f"volfast-dbn-read:{self.path.name}", daemon=True)
        t.start()
        try:
            while (item := q.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while True:  # free the queue so a producer blocked in put() sees the stop flag
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
            t.join()

    def _decompressed_blocks(
        self, hash_bytes: bool = True, read_bytes: int | None = None, verify: bool = False
    ) -> Generator[bytes, None, None]:
        """Decompressed bytes of the whole file (header included), hashing the raw bytes on the way;
        ``read_bytes`` compressed bytes per read (default ``_READ_BYTES``, looked up at call time).

        ``verify``: the integrity checks of a record read. Each zstd frame's content checksum is checked by
        the decompressor at the frame's end; when the caller stops early (closes this generator) inside a
        frame that carries a checksum, the rest of that frame is decompressed and discarded so its checksum
        is still verified. A file read to its end is compared with its sha256 sidecar when there is one.
        A failure is kept in ``self._verify_error`` (a closing generator cannot raise to its consumer from a
        helper thread) and raised by :meth:`iter_chunks`.
        """
        import zstandard

        read_bytes = _READ_BYTES if read_bytes is None else read_bytes

        # A helper thread hashes big files alongside decompression; for small ones its start-up costs more.
        h: Any = (
            _NoHash()
            if not hash_bytes
            else _ThreadedHash()
            if self.size_bytes >= _BACKGROUND_MIN_BYTES and not _one_thread()
            else hashlib.sha256()
        )
        sidecar = self.sha256 if verify and not hash_bytes else None  # verified when read to the end
        if sidecar is not None:
            big = self.size_bytes >= _BACKGROUND_MIN_BYTES and not _one_thread()
            h = _ThreadedHash() if big else hashlib.sha256()
        try:
            with open(self.path, "rb") as fh:
                if not self.compressed:
                    while block := fh.read(read_bytes * 4):
                        h.update(block)
                        yield block
                    self._finish_hash(h, hash_bytes, sidecar)
                    return
                dctx = zstandard.ZstdDecompressor()
                dobj = dctx.decompressobj()
                in_frame = False
                checksummed = False  # the current frame carries a content checksum
                produced = 0
                consumed = 0  # compressed bytes before the current raw block
                frame_at = 0  # compressed offset of the current frame
                copy_for_hash = isinstance(h, _ThreadedHash)  # it hashes later: not a reused buffer
                raws = self._raw_blocks(fh, read_bytes)
                try:
                    for raw in raws:
                        h.update(bytes(raw) if copy_for_hash and isinstance(raw, memoryview) else raw)
                        data = raw
                        while data:
                            if not in_frame:
                                frame_at = consumed + len(raw) - len(data)
                                # Frame_Header_Descriptor bit 2: Content_Checksum_flag (RFC 8878 3.1.1.1.1)
                                checksummed = (
                                    len(data) > 4 and bytes(data[:4]) == _ZSTD_MAGIC and bool(data[4] & 0x04)
                                )
                            try:
                                out = dobj.decompress(data)
                            except zstandard.ZstdError as exc:
                                raise DBNReadError(
                                    self.path,
                                    f"corrupt zstd data at byte {frame_at}+ (frame starting there: {exc}) "
                                    f"after {produced} decompressed bytes",
                                ) from exc
                            in_frame = True
                            produced += len(out)
                            if out:
                                yield out
                            if dobj.eof:  # frame finished: a new frame may follow (multi-frame files)
                                data = dobj.unused_data
                                dobj = dctx.decompressobj()
                                in_frame = False
                            else:
                                data = b""
                        consumed += len(raw)
                except GeneratorExit:
                    # The caller stopped early (at the cut): finish the current frame so that its checksum
                    # is verified too. Frames without a checksum have nothing to verify: stop at once.
                    if verify and in_frame and checksummed:
                        self._verify_error = self._drain_frame(dobj, raws, frame_at)
                    raise
                finally:
                    raws.close()
                if in_frame:
                    raise DBNReadError(
                        self.path,
                        f"truncated: the last zstd frame is incomplete (it starts at byte {frame_at}, the "
                        f"file ends at byte {consumed}) after {produced} decompressed bytes",
                    )
                self._finish_hash(h, hash_bytes, sidecar)
        finally:
            if isinstance(h, (_ThreadedHash, _NoHash)):
                h.close()  # an early exit must not leave the hashing thread behind

    def _record_byte(self, index: int) -> int:
        """Offset of record ``index`` in the decompressed stream (after the metadata header)."""
        dtype = self.record_dtype()
        return len(self._header_bytes) + index * (dtype.itemsize if dtype is not None else 0)

    def _finish_hash(self, h: Any, hash_bytes: bool, sidecar: str | None) -> None:
        """Keep the streamed sha256, or compare it with the sidecar's (a mismatch: the file changed)."""
        if hash_bytes:
            self.sha256 = h.hexdigest()
        elif sidecar is not None and h.hexdigest() != sidecar:
            raise DBNReadError(
                self.path,
                f"sha256 of the file ({h.hexdigest()[:16]}...) differs from its sidecar "
                f"{self.path.name}{SIDECAR_SUFFIX} ({sidecar[:16]}...): the file was changed or damaged",
            )

    def _drain_frame(self, dobj: Any, raws: Any, frame_at: int) -> DBNReadError | None:
        """Decompress the rest of the current frame, discarding the bytes; the error when it is corrupt."""
        import zstandard

        if dobj.eof:  # the frame ended with the block the caller stopped in
            return None
        try:
            for raw in raws:
                dobj.decompress(raw)
                if dobj.eof:
                    return None
            return DBNReadError(self.path, f"truncated: the zstd frame from byte {frame_at} is incomplete")
        except zstandard.ZstdError as exc:
            return DBNReadError(self.path, f"corrupt zstd data in the frame from byte {frame_at} ({exc})")

    def _raw_blocks(self, fh: Any, read_bytes: int) -> Generator[bytes | memoryview, None, None]:
        """The compressed bytes of the file from its start, ``read_bytes`` at a time: through the page cache
        from ``fh``, or for a large file by a :class:`_DirectReader` (O_DIRECT, where the filesystem allows
        it). A yielded memoryview is valid until the next one is asked for."""
        direct = None
        if read_bytes >= _READ_BYTES and self.size_bytes >= _DIRECT_MIN_BYTES and _direct_io():
            try:
                direct = _DirectReader(self.path)
            except OSError:  # no O_DIRECT on this filesystem (tmpfs, some network mounts): buffered reads
                direct = None
        done = 0  # bytes handed out
        if direct is not None:
            try:
                for block in direct:
                    for off in range(0, len(block), read_bytes):  # decompressed pieces stay cache-sized
                        piece = block[off : off + read_bytes]
                        yield piece
                        done += len(piece)
                return
            except OSError:  # a filesystem that took O_DIRECT at open but not in reads: buffered from here
                fh.seek(done)
            finally:
                direct.close()
        while raw := fh.read(read_bytes):
            yield raw

    def _iter_mixed(self, count: int, schema: str | None) -> Iterator[np.ndarray]:
        # Mixed-schema files (live captures) are small; records are decoded one by one (upgraded to the
        # current
        # DBN version, as DBNStore does) and the requested rtype is kept.
        import databento_dbn as dd

        if schema is None:
            raise DBNReadError(self.path, "mixed-schema file: say which schema to read")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype = self.store.to_ndarray(schema=schema).dtype
        rtype = _rtype_of_schema(schema)
        # UPGRADE_TO_V3, via the typed ``from_int``: its .pyi declares the members as ``int`` attributes.
        dec = dd.DBNDecoder(upgrade_policy=dd.VersionUpgradePolicy.from_int(3))
        pending: list[bytes] = []
        done = 0
        for block in self._decompressed_blocks(self._hash_on_read):
            dec.write(block)
            try:
                recs = dec.decode()
            except Exception as exc:
                raise DBNReadError(self.path, f"cannot decode records ({exc})", done) from exc
            for r in recs:
                rt = getattr(r, "rtype", None)  # the decoder may also hand back the Metadata, which has none
                if rt is not None and int(rt) in rtype:
                    pending.append(bytes(r))
            while len(pending) >= count:
                yield np.frombuffer(b"".join(pending[:count]), dtype=dtype, count=count)
                del pending[:count]
                done += count
        if pending:
            yield np.frombuffer(b"".join(pending), dtype=dtype, count=len(pending))


def _direct_io() -> bool:
    """O_DIRECT reads are available and not switched off (``VOLFAST_DIRECT_IO=0``)."""
    return hasattr(os, "O_DIRECT") and os.environ.get("VOLFAST_DIRECT_IO", "1") not in ("0", "")


class _DirectReader:
    """A file's bytes read with ``O_DIRECT`` by an I/O thread, a few megabytes ahead of the consumer.

    Reading a file that is not in the page cache through it costs the reading process the kernel's page
    cache fill (about 20 ms of CPU for a 40 MB day file here); with O_DIRECT the disk writes straight into
    our page-aligned buffers (about 2 ms), and the thread waits for the disk while the caller decompresses,
    so it costs no core of its own (which is why it is used even under ``VOLFAST_NUM_THREADS=1``). Buffers
    are reused: a yielded memoryview is valid until the next one is asked for. Raises OSError from the
    constructor where the filesystem refuses O_DIRECT.
    """

    def __init__(self, path: Path) -> None:
        import mmap
        import queue
        import threading

        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self._free: Any = queue.Queue()
        self._full: Any = queue.Queue()
        for _ in range(_DIRECT_BUFFERS):
            self._free.put(mmap.mmap(-1, _DIRECT_BYTES))
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                buf = self._free.get()
                if buf is None:
                    break
                k = os.readv(self._fd, [buf])
                self._full.put((buf, k))
                if k == 0:
                    break
        except BaseException as exc:  # handed to the consumer, which raises it
            self._full.put(exc)

    def __iter__(self) -> Iterator[memoryview]:
        while True:
            item = self._full.get()
            if isinstance(item, BaseException):
                raise item
            buf, k = item
            if k == 0:
                return
            view = memoryview(buf)[:k]
            try:
                yield view
            finally:
                view.release()
            self._free.put(buf)

    def close(self) -> None:
        """Stop the thread and close the file (idempotent)."""
        self._stop.set()
        self._free.put(None)  # wakes a thread waiting for a buffer; it never waits on the unbounded queue
        self._t.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _ThreadedHash:
    """sha256 fed from a helper thread: hashlib releases the GIL on large updates, so hashing the compressed
    bytes overlaps with decompression instead of adding to it. Updates are applied in submission order."""

    def __init__(self) -> None:
        import queue
        import threading

        self._h = hashlib.sha256()
        self._q: Any = queue.Queue(maxsize=16)  # bounded: at most 16 compressed reads in flight
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (b := self._q.get()) is not None:
            self._h.update(b)

    def update(self, b: bytes) -> None:
        self._q.put(b)

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()

    def close(self) -> None:
        """Stop the thread once it has applied every update so far (idempotent)."""
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()


class _NoHash:
    def update(self, _: bytes) -> None:
        pass

    def hexdigest(self) -> None:
        return None

    def close(self) -> None:
        pass


def _record_tag(arr: np.ndarray) -> int:
    """length | rtype << 8 of the first record (what :meth:`DBNFile._views` checks every record against)."""
    return int(arr["length"][0]) | int(arr["rtype"][0]) << 8


#: record types older DBN versions used for a schema (OHLCV_DEPRECATED before the per-interval rtypes)
_LEGACY_RTYPES: dict[str, set[int]] = {f"ohlcv-{s}": {0x11} for s in ("1s", "1m", "1h", "1d", "eod")}


def _rtype_of_schema(schema: str) -> set[int]:
    import databento_dbn as dd

    rt = dd.RType.from_schema(dd.Schema(schema))
    return {int(rt)}


def _one_thread() -> bool:
    """True when volfast is limited to one thread (``VOLFAST_NUM_THREADS=1``): no helper threads."""
    from volfast._native import resolve_threads

    return resolve_threads(None) == 1


SIDECAR_SUFFIX = ".sha256.json"


def write_sha256_sidecar(path: str | os.PathLike[str], sha256: str) -> Path:
    """Record ``sha256`` (hex) of the file at ``path`` beside it, in ``<path>.sha256.json``, with the file's
    size and modification time now; :func:`read_sha256_sidecar` trusts it only while both still match.
    Written atomically. Returns the sidecar's path."""
    p = Path(path)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"{p}: {sha256!r} is not a hex sha256")
    st = p.stat()
    doc = {"name": p.name, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    side = Path(f"{p}{SIDECAR_SUFFIX}")
    from volfast.io.output import atomic_write_bytes

    atomic_write_bytes(side, (json.dumps(doc) + "\n").encode())
    return side


def read_sha256_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The sha256 recorded beside ``path`` by :func:`write_sha256_sidecar`, or None when there is none, it
    is unreadable, or the file's size or modification time changed since (then the file is hashed)."""
    p = Path(path)
    try:
        doc = json.loads(Path(f"{p}{SIDECAR_SUFFIX}").read_text())
        st = p.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    sha = doc.get("sha256")
    ok = (
        doc.get("name") == p.name
        and doc.get("size") == st.st_size
        and doc.get("mtime_ns") == st.st_mtime_ns
        and isinstance(sha, str)
        and re.fullmatch(r"[0-9a-f]{64}", sha) is not None
    )
    return sha if ok else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes on disk."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


# -- day folders -----------------------------------------------------------------------------------
_DAY_FILE = re.compile(
    r"^(?P<dataset>[a-z0-9]+(?:-[a-z0-9]+)*?)-(?P<date>\d{8})\.(?P<schema>[a-z0-9-]+)\.dbn(?:\.zst)?$"
)
#: The trading day a file belongs to: each New York date whose 16:00 close lies in [start, end).
_CLOSE_TZ = "America/New_York"
_CLOSE_TIME = _dt.time(16, 0)


def dataset_from_filename(name: str) -> str | None:
    """``"glbx-mdp3-20240102.mbp-1.dbn.zst"`` -> ``"GLBX.MDP3"``; None when the name is not batch-style."""
    m = _DAY_FILE.match(name)
    return None if m is None else m["dataset"].upper().replace("-", ".")


@dataclass(frozen=True)
class DBNFileInfo:
    """What a folder scan learnt about one file from its metadata (never from its name, except the date of
    a file whose metadata has no end and whose name is batch-style).

    ``problem`` is None for a usable DBN file, else why it cannot be used (not DBN, unreadable header,
    mixed schemas...). ``dates`` are the trading days it serves: every New York date whose 16:00 close lies in
    the file's [start, end); a file that holds no close (a window of minutes) serves the date it ends on.
    """

    path: Path
    dataset: str | None = None
    schema: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    dates: tuple[_dt.date, ...] = ()
    problem: str | None = None

    def describe(self) -> str:
        """One short phrase: what the file is."""
        if self.problem is not None:
            return f"{self.path.name}: {self.problem}"
        span = _fmt_span(self.start_ns, self.end_ns)
        days = ", ".join(d.isoformat() for d in self.dates[:3]) + (" ..." if len(self.dates) > 3 else "")
        return f"{self.path.name}: {self.dataset} {self.schema}, {span} (day {days or 'none'})"


def _fmt_span(start: int | None, end: int | None) -> str:
    def f(ns: int | None) -> str:
        if ns is None:
            return "open"
        return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"{f(start)} to {f(end)}"


def _file_dates(start: int, end: int | None, name: str) -> tuple[_dt.date, ...]:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(_CLOSE_TZ)
    if end is None:
        m = _DAY_FILE.match(name)  # no end in the metadata: a batch-style name's date, else the start's
        if m is not None:
            return (_dt.datetime.strptime(m["date"], "%Y%m%d").date(),)
        return (_dt.datetime.fromtimestamp(start / 1e9, tz=tz).date(),)
    first = _dt.datetime.fromtimestamp(start / 1e9, tz=tz).date()
    last = _dt.datetime.fromtimestamp(max(end - 1, start) / 1e9, tz=tz).date()
    out: list[_dt.date] = []
    d = first
    while d <= last and len(out) < 10_000:
        close = int(_dt.datetime.combine(d, _CLOSE_TIME, tzinfo=tz).timestamp()) * 1_000_000_000
        if start <= close < end:
            out.append(d)
        d += _dt.timedelta(days=1)
    return tuple(out) if out else (last,)


#: (path, size, mtime_ns) -> DBNFileInfo: a folder is scanned once per process; a changed file is read again.
_INFO_CACHE: dict[tuple[str, int, int], DBNFileInfo] = {}


def _looks_like_data(p: Path) -> bool:
    n = p.name
    return not (n.startswith(".") or n.endswith(".sha256.json") or n.endswith(".tmp") or ".part" in n)


_U64_MAX = 2**64 - 1
_U16_MAX = 2**16 - 1


def _quick_metadata(p: Path) -> tuple[str, str | None, int, int | None]:
    """``(dataset, schema or None when mixed, start_ns, end_ns or None)`` from the fixed fields at the start
    of a DBN metadata header (``DBN``, version, length, dataset[16], schema u16, start u64, end u64, little
    endian; the same in v1-v3), decompressing only its first bytes rather than decoding the whole header
    with its symbol mappings (``DBNFile``), which a scan of a year's folder would do for every file.
    Raises :class:`DBNReadError`."""
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
            fh.seek(0)
            if magic == _ZSTD_MAGIC:
                import zstandard

                reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
                buf = b""
                while len(buf) < 42:
                    chunk = reader.read(42 - len(buf))
                    if not chunk:
                        break
                    buf += chunk
            elif magic[:3] == b"DBN":
                buf = fh.read(42)
            else:
                raise DBNReadError(p, "not a DBN file (neither a DBN nor a zstd signature)")
    except OSError as exc:
        raise DBNReadError(p, f"cannot read ({exc.strerror or exc})") from None
    except DBNReadError:
        raise
    except Exception as exc:  # zstandard.ZstdError: a damaged frame
        raise DBNReadError(p, f"cannot decompress the metadata header ({exc})") from None
    if len(buf) < 42:
        raise DBNReadError(p, "file ends inside the metadata header", 0)
    if buf[:3] != b"DBN":
        raise DBNReadError(p, "not a DBN stream (no DBN signature after decompression)")
    dataset = buf[8:24].split(b"\0", 1)[0].decode("ascii", "replace")
    code, start, end = struct.unpack_from("<HQQ", buf, 24)
    schema: str | None = None
    if code != _U16_MAX:
        import databento_dbn as dd

        try:
            schema = str(dd.Schema.from_int(code).value)
        except Exception:
            raise DBNReadError(p, f"unknown schema code {code} in the metadata") from None
    return dataset, schema, int(start), None if end >= _U64_MAX else int(end)


def dbn_file_info(path: str | os.PathLike[str]) -> DBNFileInfo:
    """The metadata of one file (dataset, schema, start/end, trading dates), or why it is not usable."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        return DBNFileInfo(p, problem=f"cannot stat ({exc.strerror or exc})")
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _INFO_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        dataset, schema, start, end = _quick_metadata(p)
    except DBNReadError as exc:
        # A damaged file with a batch-style name still belongs to its day, so that the day fails naming it
        # (rather than vanishing from the folder's dates).
        m = _DAY_FILE.match(p.name)
        named = () if m is None else (_dt.datetime.strptime(m["date"], "%Y%m%d").date(),)
        info = DBNFileInfo(p, schema=None if m is None else m["schema"], dates=named, problem=exc.reason)
    else:
        if schema is None:
            info = DBNFileInfo(
                p,
                dataset=dataset,
                start_ns=start,
                problem="mixed-schema stream (no schema in its metadata)",
            )
        else:
            info = DBNFileInfo(
                p,
                dataset=dataset,
                schema=schema,
                start_ns=start,
                end_ns=end,
                dates=_file_dates(start, end, p.name),
            )
    _INFO_CACHE[key] = info
    return info


def scan_folder(data: str | os.PathLike[str]) -> list[DBNFileInfo]:
    """Every file directly under ``data`` (hidden files, ``.sha256.json`` sidecars and temporaries aside),
    described by its DBN metadata, whatever its name.

    Raises
    ------
    FileNotFoundError
        If ``data`` is not a folder.
    """
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    return [dbn_file_info(p) for p in sorted(root.iterdir()) if p.is_file() and _looks_like_data(p)]


@dataclass
class DayFiles:
    """The files of one trading day in a folder, by schema (recognised by their metadata), and what else
    the folder holds with why it is not used for the day."""

    date: _dt.date
    by_schema: dict[str, list[Path]]
    others: list[str] = field(default_factory=list)  # "name: why not used for this day"

    def quotes(self) -> tuple[str, list[Path]] | None:
        """The finest top-of-book schema present (see :data:`QUOTE_SCHEMAS`) and its files."""
        for s in QUOTE_SCHEMAS:
            if self.by_schema.get(s):
                return s, self.by_schema[s]
        return None

    def definitions(self) -> list[Path]:
        return self.by_schema.get("definition", [])

    def explain(self, limit: int = 8) -> str:
        """What the folder holds and why none of it is a top-of-book file for the day (one line)."""
        found = [f"{p.name}: {s} (not top-of-book)" for s, ps in self.by_schema.items() for p in ps]
        items = found + self.others
        if not items:
            return "the folder holds no files"
        more = f"; and {len(items) - limit} more" if len(items) > limit else ""
        return "found " + "; ".join(items[:limit]) + more


def _as_date(date: str | _dt.date) -> _dt.date:
    if isinstance(date, _dt.datetime):
        return date.date()
    if isinstance(date, _dt.date):
        return date
    s = str(date).strip()
    try:
        return _dt.date.fromisoformat(s) if "-" in s else _dt.datetime.strptime(s, "%Y%m%d").date()
    except ValueError:
        from volfast.errors import UsageError

        raise UsageError(f"date must be a real date as YYYY-MM-DD or YYYYMMDD, got {date!r}") from None


def find_day_files(data: str | os.PathLike[str], date: str | _dt.date) -> DayFiles:
    """The DBN files under ``data`` that serve trading day ``date``, recognised by their metadata (dataset,
    schema, start/end), whatever they are called: ``glbx-mdp3-20240102.mbp-1.dbn.zst`` (``volfast
    download``) and ``opra-pillar.SPY.OPT-exp20250404.20250402T173000-173010Z.cbbo-1s.v3.dbn.zst`` (the
    Databento API's name) alike. Files that do not serve the day are listed in ``others`` with the reason.

    Raises
    ------
    FileNotFoundError
        If ``data`` is not a folder.
    """
    d = _as_date(date)
    by_schema: dict[str, list[Path]] = {}
    others: list[str] = []
    for info in scan_folder(data):
        if info.problem is not None and not (info.schema is not None and d in info.dates):
            others.append(info.describe())
        elif d in info.dates:
            assert info.schema is not None
            by_schema.setdefault(info.schema, []).append(info.path)
        else:
            others.append(info.describe() + f", not {d.isoformat()}")
    return DayFiles(date=d, by_schema=by_schema, others=others)


def list_dates(data: str | os.PathLike[str]) -> list[_dt.date]:
    """Every trading date served by a DBN file under ``data`` (by metadata; a damaged file by its batch-style
    name), sorted."""
    out: set[_dt.date] = set()
    for info in scan_folder(data):
        out.update(info.dates)  # damaged batch-style files too: their day fails, naming them
    return sorted(out)
