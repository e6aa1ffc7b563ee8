"""A paged KV cache: fixed-size blocks, a block table per sequence, blocks freed and reused.

A plain KV cache reserves room for the longest possible answer of every sequence up front, and most
of that room stays empty. Paging (vLLM's PagedAttention idea) cuts the cache into blocks of
`block_size` token slots, hands a sequence a new block only when its last one is full, and takes the
blocks back the moment the sequence ends; a *block table* maps a sequence's logical positions to
the physical blocks, which need not be contiguous.

    position p of sequence s  ->  slot = table[s][p // block_size] * block_size + p % block_size

Every layer's keys and values live in one pool tensor of shape (layers, 2, blocks * block_size,
kv_heads, head_dim); writing and reading a sequence are `index_copy_` / `index_select` on its slots.

    >>> cache = PagedKVCache(num_layers=1, num_kv_heads=1, head_dim=2, num_blocks=4, block_size=2)
    >>> cache.add("a"); cache.grow("a", 3)     # 3 tokens need 2 blocks
    True
    >>> cache.tables["a"], cache.allocator.num_free
    ([0, 1], 2)
    >>> cache.free("a"); cache.allocator.num_free
    4
"""
from __future__ import annotations

from typing import Hashable

import torch

__all__ = ["BlockAllocator", "PagedKVCache", "OutOfBlocks"]


class OutOfBlocks(RuntimeError):
    """The pool has no free block left; the scheduler must wait or preempt a sequence."""


class BlockAllocator:
    """A free list of block ids: `allocate` pops one, `release` pushes them back.

    >>> a = BlockAllocator(3); b = a.allocate(); a.num_free, b
    (2, 0)
    >>> a.release([b]); a.num_free
    3
    """

    def __init__(self, num_blocks: int):
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        # Popping from the end and pushing freed blocks back there reuses the most recently freed
        # (still cache-warm) blocks first.
        self._free = list(range(num_blocks - 1, -1, -1))
        self._used: set[int] = set()

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        if not self._free:
            raise OutOfBlocks(f"all {self.num_blocks} blocks are in use")
        b = self._free.pop()
        self._used.add(b)
        return b

    def release(self, blocks) -> None:
        for b in blocks:
            if b not in self._used:
                raise ValueError(f"block {b} is not allocated (double free?)")
            self._used.remove(b)
            self._free.append(b)


class PagedKVCache:
    """Keys and values of many sequences in one pool of blocks.

    num_blocks * block_size is the total number of tokens the cache can hold across all sequences.
    """

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, num_blocks: int, block_size: int = 16,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.allocator = BlockAllocator(num_blocks)
        self.pool = torch.zeros(num_layers, 2, num_blocks * block_size, num_kv_heads, head_dim, dtype=dtype,
                                device=device)
        self.tables: dict[Hashable, list[int]] = {}
        self.lengths: dict[Hashable, int] = {}   # tokens whose keys/values are stored (or about to be)
        self.peak_blocks = 0

    # -- bookkeeping ------------------------------------------------------------------------------
    @property
    def bytes_per_block(self) -> int:
        layers, two, _, heads, dim = self.pool.shape
        return layers * two * self.block_size * heads * dim * self.pool.element_size()

    def memory_used(self) -> int:
        """Bytes of the pool held by live sequences right now."""
        return self.allocator.num_used * self.bytes_per_block

    def blocks_needed(self, n_tokens: int) -> int:
        """ceil(n_tokens / block_size).

        >>> PagedKVCache(1, 1, 2, num_blocks=4, block_size=16).blocks_needed(17)
        2
        """
        return -(-n_tokens // self.block_size)

    def can_fit(self, n_tokens: int) -> bool:
        """Whether a new sequence of n_tokens would find enough free blocks."""
        return self.blocks_needed(n_tokens) <= self.allocator.num_free

    def add(self, seq: Hashable) -> None:
        if seq in self.tables:
            raise ValueError(f"sequence {seq!r} is already in the cache")
        self.tables[seq] = []
        self.lengths[seq] = 0

    def grow(self, seq: Hashable, new_length: int) -> bool:
        """Make room for `new_length` tokens; False (and nothing allocated) when blocks run out."""
        table = self.tables[seq]
        extra = self.blocks_needed(new_length) - len(table)
        if extra > self.allocator.num_free:
            return False
        for _ in range(extra):
            table.append(self.allocator.allocate())
        self.lengths[seq] = new_length
        self.peak_blocks = max(self.peak_blocks, self.allocator.num_used)
        return True

    def free(self, seq: Hashable) -> None:
        """Give a finished (or cancelled) sequence's blocks back to the pool."""
        self.allocator.release(self.tables.pop(seq))
        self.lengths.pop(seq)

    # -- slots ------------------------------------------------------------------------------------
    def slots(self, seq: Hashable, start: int, end: int) -> torch.Tensor:
        """Physical slot indices of positions start..end-1 of `seq`.

        >>> c = PagedKVCache(1, 1, 2, num_blocks=4, block_size=2); c.add("a"); c.add("b")
        >>> c.grow("b", 1), c.grow("a", 3)
        (True, True)
        >>> c.slots("a", 0, 3).tolist()       # a got blocks 1 and 2, b got block 0
        [2, 3, 4]
        """
        if end > self.lengths[seq]:
            raise IndexError(f"position {end - 1} of {seq!r} has no block; call grow() first")
        pos = torch.arange(start, end)
        table = torch.tensor(self.tables[seq], dtype=torch.long)
        return (table[pos // self.block_size] * self.block_size + pos % self.block_size).to(self.pool.device)

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store keys and values (T, kv_heads, head_dim) at the given slots."""
        self.pool[layer, 0].index_copy_(0, slots, k.to(self.pool.dtype))
        self.pool[layer, 1].index_copy_(0, slots, v.to(self.pool.dtype))

    def read(self, layer: int, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values at the given slots (any shape of index: the result adds (kv_heads, head_dim))."""
        flat = slots.reshape(-1)
        k = self.pool[layer, 0].index_select(0, flat).unflatten(0, slots.shape)
        v = self.pool[layer, 1].index_select(0, flat).unflatten(0, slots.shape)
        return k, v
