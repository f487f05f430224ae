"""The audit journal: checking its hash chain (``present_record`` renders the change record).

Each journal record carries the hash of the one before it, so editing, removing or
reordering a record breaks the chain from that point on (``engine.store.chain`` hashes and
checks it, for the store and for this module alike). ``check`` reads the records as the
store hands them over, so a journal of any length is verified in constant memory. Whoever
can rewrite the whole database can rewrite the whole chain too: keep exported records, or
the head hash, elsewhere.
"""

from __future__ import annotations

from engine.store.chain import Verdict, check, verify

__all__ = ["Verdict", "check", "verify"]
