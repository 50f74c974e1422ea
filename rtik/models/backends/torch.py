"""The torch reference backend: runs the pack's ``step.pt2`` (a ``torch.export`` program) on CPU or CUDA.

torch is imported only when this backend opens, so rtik runs without it. On CUDA each batch bucket gets static
input/output tensors and one captured CUDA graph (replayed per frame); batches are padded up to their bucket.
"""

from __future__ import annotations

import numpy as np

from rtik.errors import BackendError
from rtik.models.backends.base import Backend, bucket
from rtik.models.modelpack import ModelPack


class TorchBackend(Backend):
    """Options: ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), ``cuda_graphs`` (default True on CUDA)."""

    def __init__(self, pack: ModelPack, name="torch", device="cpu", cuda_graphs=True):
        super().__init__(pack)
        self.name = name
        try:
            import torch
        except ImportError as e:
            raise BackendError("the torch backend needs PyTorch: pip install 'rtik[train]' (or torch)") from e
        self._torch = torch
        path = pack.file("torch")
        try:
            program = torch.export.load(str(path))
        except Exception as e:  # torch raises many types for a bad archive
            raise BackendError(f"{name}: cannot load the torch program {path}: {e}") from e
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(
                f"{name}: CUDA is not available to torch (torch {torch.__version__}); use --backend torch"
            )
        self.module = program.module().to(self.device)
        self.graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self._static: dict[int, tuple] = {}
        self._out_host: dict[int, tuple] = {}
        if self.device.type == "cuda":
            self._stream = torch.cuda.Stream(self.device)

    def _graph(self, Bp: int):
        """Static tensors and the CUDA graph for padded batch ``Bp`` (captured on first use)."""
        torch = self._torch
        s = self._static.get(Bp)
        if s is None:
            ins = (
                torch.zeros(Bp, self.Ji, 3, device=self.device),
                torch.zeros(Bp, self.Ji, device=self.device),
                torch.zeros(Bp, self.S, device=self.device),
            )
            with torch.inference_mode():
                self._stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(self._stream):
                    for _ in range(3):  # warm up (allocator, kernels) before capture
                        self.module(*ins)
                torch.cuda.current_stream(self.device).wait_stream(self._stream)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, stream=self._stream):
                    outs = self.module(*ins)
            s = self._static[Bp] = (g, ins, outs)
        return s

    def step(self, pos, mask, state):
        torch = self._torch
        B = self.check_inputs(pos, mask, state)
        if self.device.type == "cpu":
            with torch.inference_mode():
                outs = self.module(*(torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (pos, mask, state)))
            return tuple(o.numpy() for o in outs)
        if not self.graphs:
            with torch.inference_mode():
                ins = [
                    torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device) for a in (pos, mask, state)
                ]
                return tuple(o.cpu().numpy() for o in self.module(*ins))
        Bp = bucket(B)
        g, ins, outs = self._graph(Bp)
        with torch.inference_mode():
            for t, a in zip(ins, (pos, mask, state), strict=True):
                t[:B].copy_(torch.from_numpy(np.ascontiguousarray(a, np.float32)), non_blocking=False)
            g.replay()
            host = self._out_host.get(B)
            if host is None:
                host = self._out_host[B] = tuple(torch.empty((B, *o.shape[1:]), pin_memory=True) for o in outs)
            for h, o in zip(host, outs, strict=True):
                h.copy_(o[:B], non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
        return tuple(h.numpy() for h in host)

    def describe(self) -> str:
        extra = ", CUDA graphs" if self.graphs else ""
        name = self._torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        return f"{self.name} (torch {self._torch.__version__}, {name}{extra})"

    def close(self) -> None:
        self._static.clear()
        self._out_host.clear()


BACKEND_CLASS = TorchBackend
