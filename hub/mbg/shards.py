"""A day's scans split into groups that reconciling never joins, so a large day is reconciled a group at a time."""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable
from itertools import repeat

import numpy as np

from .held import HeldScan, tag_chunks
from .plan import Plan


def shards(plan: Plan, scans: Iterable[HeldScan]) -> tuple[list[tuple[list[HeldScan], set[str]]], set[str]]:
    """The day's scans in groups, each with the planned schools whose deliveries it holds, and the planned
    schools no scan of the day touched.

    Reconciling joins scans on a container tag, a school (its taps, its deliveries, the kitchen tap naming it),
    a kitchen (its cook taps) and a site; a batch's first cook tap is looked up over every day, read only.
    So a group starts as a kitchen with its schools (any other site or school stands alone), and
    groups that share a tag are one. Tags are compared by a 64-bit hash: two tags that share one only join
    two groups that could have stayed apart, which changes no answer.
    """
    parent: dict[Hashable, Hashable] = {}

    def find(x: Hashable) -> Hashable:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(a: Hashable, b: Hashable) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    def group(name: str) -> Hashable:
        school = plan.school(name)
        key = school.kitchen if school is not None else name
        parent.setdefault(key, key)
        return key

    keyed: list[tuple[HeldScan, Hashable]] = []
    lists: dict[bytes | tuple[str, ...], Hashable] = {}  # one group per distinct tag list, joined below
    for s in scans:
        g = group(s.site)
        if s.school is not None:
            union(g, group(s.school))
        keyed.append((s, g))
        if s.tags:
            seen = lists.get(s.tags)
            if seen is None:
                lists[s.tags] = g
            else:
                union(seen, g)
    # Tags shared by different tag lists (a container sent again, a short delivery, a misroute): sort the
    # hashes of every tag of every distinct list, and join the groups of equal neighbours.
    hashes = array("q")
    owners: list[Hashable] = []
    index = array("q")
    for packed, g in lists.items():
        n = len(owners)
        owners.append(g)
        chunks = tag_chunks(packed)
        hashes.extend(map(hash, chunks))
        index.extend(repeat(n, len(chunks)))
    if len(hashes) > 1:
        h = np.frombuffer(hashes, dtype=np.int64)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        same = np.flatnonzero(hs[1:] == hs[:-1])
        idx = np.frombuffer(index, dtype=np.int64)[order]
        for i in same.tolist():
            union(owners[int(idx[i])], owners[int(idx[i + 1])])
    out: dict[Hashable, tuple[list[HeldScan], set[str]]] = {}
    for s, g in keyed:
        root = find(g)
        part = out.get(root)
        if part is None:
            part = out[root] = ([], set())
        part[0].append(s)
    untouched: set[str] = set()
    for school in plan.schools:
        part = out.get(find(school.kitchen)) if school.kitchen in parent else None
        if part is None:
            untouched.add(school.id)
        else:
            part[1].add(school.id)
    return list(out.values()), untouched
