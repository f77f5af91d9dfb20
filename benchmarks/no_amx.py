"""Run a command on this CPU as if it had no AMX (issue 28): `python -m benchmarks.no_amx python -m shelf bench`.

AMX's tile state is something a Linux process must ask the kernel for (arch_prctl ARCH_REQ_XCOMP_PERM) before its
first tile instruction; ONNX Runtime's MLAS, oneDNN (torch, OpenVINO) and Shelf's own check all ask and fall back to
AVX-512 / VNNI / AVX512-BF16 kernels when refused. A seccomp filter that refuses that one request (EPERM) and
allows every other system call is installed here and inherited by the command and all its children. Unlike
ONEDNN_MAX_CPU_ISA it also holds ONNX Runtime back. It emulates an AVX-512 CPU without AMX on the same cores, caches
and clock (a Xeon with AMX switched off), not an AMD Zen 4, whose AVX-512 units and caches differ.
"""
from __future__ import annotations

import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS, SYS_SECCOMP, SECCOMP_SET_MODE_FILTER = 38, 317, 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2  # keep the kernel from turning on its Spectre store-bypass mitigation, which a
# seccomp filter does by default on some kernels (spec_store_bypass_disable=seccomp) and which would slow the command
AUDIT_ARCH_X86_64, SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM = 0xC000003E, 158, 0x1023
LOAD_WORD, JUMP_IF_EQUAL, RETURN = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
ALLOW, REFUSE = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
# offsets in struct seccomp_data: nr at 0, arch at 4, args[0] (its low 32 bits on little-endian x86-64) at 16


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


FILTER = b"".join([
    _instruction(LOAD_WORD, 0, 0, 4), _instruction(JUMP_IF_EQUAL, 0, 5, AUDIT_ARCH_X86_64),
    _instruction(LOAD_WORD, 0, 0, 0), _instruction(JUMP_IF_EQUAL, 0, 3, SYS_ARCH_PRCTL),
    _instruction(LOAD_WORD, 0, 0, 16), _instruction(JUMP_IF_EQUAL, 0, 1, ARCH_REQ_XCOMP_PERM),
    _instruction(RETURN, 0, 0, REFUSE), _instruction(RETURN, 0, 0, ALLOW),
])


def refuse_amx() -> None:
    """From now on this process and its children are refused AMX (see the module's docstring). Call it before any
    runtime is loaded: a process that was already granted the tiles keeps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    program_bytes = ctypes.create_string_buffer(FILTER, len(FILTER))
    program = _Program(len(FILTER) // 8, ctypes.cast(program_bytes, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(
            SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, ctypes.byref(program)) != 0:
        raise OSError(ctypes.get_errno(), "could not install the seccomp filter that refuses AMX")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    refuse_amx()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
