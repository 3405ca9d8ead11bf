"""Clearing the open-for-write mark a killed SWMR writer leaves, so every HDF5 tool opens its file.

A process that opens an HDF5 file for (SWMR) writing sets the superblock's file consistency
flags and clears them when it closes the file. Killed with SIGKILL, it never closes: the flags
stay set, HDF5 refuses a plain open ("file is already open for write", h5ls/h5dump: "unable to
open file"), and only SWMR read mode opens it. `h5clear -s` clears them through a private HDF5
property that h5py does not expose, so this module does what it does, by the file format
specification (superblock versions 2 and 3; SWMR files have version 3):

    offset  size  field
    0       8     format signature  \\x89 H D F \\r \\n \\x1a \\n
    8       1     superblock version (2 or 3)
    9       1     size of offsets (O)
    10      1     size of lengths
    11      1     file consistency flags (bit 0: open for write, bit 2: open for SWMR write)
    12      O     base address
    12+O    O     superblock extension address
    12+2O   O     end of file address (absolute, as HDF5 writes it; the spec says relative to the base)
    12+3O   O     root group object header address
    12+4O   4     Jenkins lookup3 checksum of the bytes before it (initial value 0)

The superblock sits at offset 0, or at 512, 1024, 2048 ... after a user block. Clearing the mark
is one byte and the four-byte checksum, written in place and fsynced: the one in-place change
the lab makes, safe because it is made only once the file's one writer is known dead (see
`store.runs.release_killed_run`), to a superblock whose checksum proves it whole. Killed while
clearing, it leaves the old superblock or the new one (one small write, after any change of the
file's size), and the next command finishes the job.

The superblock also records the end-of-file address, and a killed writer's file may end
elsewhere. In 25 kills of a writer appending as fast as it could, it never did: HDF5 writes the
superblock and sets the file's size to match in the same flush. Dying between the two is still
possible, so the file is set to the recorded size, as HDF5 does when it closes a file it wrote:
- longer (raw data written after the last complete flush): cut at the recorded end. HDF5 refuses
  to read past it anyway, and a run's row counter only counts rows flushed before it
  (store/runs.py), so no readable row is lost. `h5clear -s` does the same.
- shorter (the superblock reached the disk, the bytes it accounts for did not): HDF5 refuses it as
  "truncated", mark or not. It is extended with zeros to the recorded end, as
  `h5clear -s --increment=0` does (EOA = max(EOA, EOF) + 0), unless that would add more than
  1 MiB: no killed writer leaves such a gap, so the file is left untouched.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLAGS_AT = 11
_VERSIONS = (2, 3)
_MASK = 0xFFFFFFFF
_MAX_GROWTH = 1 << 20  # a writer grows its file by a chunk or two between flushes; more means something else


class NotClearable(Exception):
    """The file is not one whose mark this module can clear (not HDF5, other superblock version,
    bad checksum, unreadable): it is left untouched."""


@dataclass(frozen=True)
class Superblock:
    """A version 2/3 superblock as stored: where it is, its bytes (checksum included) and the
    fields clearing needs."""

    at: int
    raw: bytes
    version: int
    flags: int
    eof: int  # end-of-file address: the file's size when HDF5 last wrote it, user block included

    @property
    def marked(self) -> bool:
        """Is the file recorded as open for writing (the state a killed writer leaves)?"""
        return self.flags != 0


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle` of `data`, the checksum of HDF5's metadata (H5checksum.c)."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & _MASK
    n, k = len(data), 0
    while n > 12:
        x, y, z = struct.unpack_from("<III", data, k)
        a, b, c = _mix((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)
        n, k = n - 12, k + 12
    if n == 0:
        return c
    tail = data[k:] + bytes(12 - n)
    x, y, z = struct.unpack("<III", tail)
    return _final((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = ((a - c) & _MASK) ^ _rot(c, 4)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rot(a, 6)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rot(b, 8)
    b = (b + a) & _MASK
    a = ((a - c) & _MASK) ^ _rot(c, 16)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rot(a, 19)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rot(b, 4)
    b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c = ((c ^ b) - _rot(b, 14)) & _MASK
    a = ((a ^ c) - _rot(c, 11)) & _MASK
    b = ((b ^ a) - _rot(a, 25)) & _MASK
    c = ((c ^ b) - _rot(b, 16)) & _MASK
    a = ((a ^ c) - _rot(c, 4)) & _MASK
    b = ((b ^ a) - _rot(a, 14)) & _MASK
    c = ((c ^ b) - _rot(b, 24)) & _MASK
    return c


def _find(fd: int, size: int) -> int:
    """Offset of the format signature: 0, then 512 and every power of two after it."""
    at = 0
    while at + len(SIGNATURE) <= size:
        if os.pread(fd, len(SIGNATURE), at) == SIGNATURE:
            return at
        at = 512 if at == 0 else at * 2
    raise NotClearable("no HDF5 format signature")


def read_superblock(fd: int) -> Superblock:
    """Parse and verify the superblock of the open file `fd`; NotClearable if it is not v2/v3
    or its checksum does not match (then nothing is known about it, and nothing is changed)."""
    size = os.fstat(fd).st_size
    at = _find(fd, size)
    head = os.pread(fd, 12, at)
    if len(head) < 12:
        raise NotClearable("superblock cut short")
    version, size_of_offsets = head[8], head[9]
    if version not in _VERSIONS:
        raise NotClearable(f"superblock version {version} (only 2 and 3 have this layout)")
    if size_of_offsets not in (2, 4, 8, 16):
        raise NotClearable(f"size of offsets {size_of_offsets} is not a valid one")
    length = 12 + 4 * size_of_offsets + 4
    raw = os.pread(fd, length, at)
    if len(raw) < length:
        raise NotClearable("superblock cut short")
    (stored,) = struct.unpack_from("<I", raw, length - 4)
    if lookup3(raw[:-4]) != stored:
        raise NotClearable("superblock checksum does not match")
    eof_at = 12 + 2 * size_of_offsets  # after the base and superblock extension addresses
    eof = int.from_bytes(raw[eof_at : eof_at + size_of_offsets], "little")
    return Superblock(at=at, raw=raw, version=version, flags=raw[_FLAGS_AT], eof=eof)


def open_for_writing(path: str | os.PathLike[str]) -> bool:
    """Does `path` hold a valid superblock marked open for writing (a live or killed SWMR writer)?

    Readers try SWMR read mode only then: on a file whose superblock is damaged, SWMR read makes
    HDF5 retry the checksum for minutes before it gives up, which hung the lab's listing.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return read_superblock(fd).marked
    except (NotClearable, OSError):
        return False
    finally:
        os.close(fd)


def cleared(sb: Superblock) -> bytes:
    """The superblock's bytes with the flags cleared and the checksum redone."""
    body = sb.raw[:_FLAGS_AT] + b"\x00" + sb.raw[_FLAGS_AT + 1 : -4]
    return body + struct.pack("<I", lookup3(body))


def clear_mark(fd: int) -> bool:
    """Clear the open-for-write mark of the HDF5 file open as `fd` (read-write), as `h5clear -s`
    does, and give the file the size its superblock records (see the module docstring).

    Only for a file whose every writer is known dead: a live writer rewrites the superblock and
    would set the mark again, or find it cleared under it. Returns whether the file changed;
    raises NotClearable (file untouched) when it is not a v2/v3 HDF5 file with a valid superblock.
    """
    sb = read_superblock(fd)
    if not sb.marked:
        return False
    size = os.fstat(fd).st_size
    if sb.eof - size > _MAX_GROWTH:
        raise NotClearable(f"the superblock records {sb.eof} bytes, the file has {size}")
    if size != sb.eof:
        os.ftruncate(fd, sb.eof)
    os.pwrite(fd, cleared(sb), sb.at)
    os.fsync(fd)
    return True
