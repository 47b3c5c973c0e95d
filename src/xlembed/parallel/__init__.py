"""Beyond one call of ``encode``: corpus embedding with bounded memory and resume (one process or Ray), and
distributed training helpers (torch.distributed)."""

from .corpus import Fields
from .embed import DEFAULT_SHARD_ROWS, ENGINES, CorpusResult, embed_corpus, read_vectors
from .shards import Settings

__all__ = ["embed_corpus", "read_vectors", "CorpusResult", "Settings", "Fields", "ENGINES", "DEFAULT_SHARD_ROWS"]
