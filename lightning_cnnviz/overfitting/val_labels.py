"""A class the training labels hold that the val labels lack, where many were due.

Nothing here knows about Lightning. Held out (hunt 31): every val label 7 written as 1 (a
label map applied to the val split alone): logged val accuracy 85% against 96% on the
same images rightly labelled, told as overfitting three validations late, or not at all.
Read once per fit from both splits' labels (in a random order where only part is read):
a class at ``s`` of the training labels is due ``s * n`` times among ``n`` val labels;
absent where ``DUE`` or more were due, and another class over its share by as many, it
was renamed. Not where nothing took its place (a class only training has, as a
background class: hunt 33), nor where the other classes' shares differ between the splits
too (a long-tailed val set: hunt 34, a background class only training has beside one,
its surplus class read as the renamed one's) and are not even either (a balanced val
set beside a long-tailed training set: hunt 35, a rename there was excused), nor where a
val class is absent from
training (labels shifted between the splits: ``class_figures.shifted``).

Example::

    >>> import torch
    >>> train = torch.arange(1000) % 4  # four classes, 25% each
    >>> val = torch.tensor([0, 1, 2, 1] * 50)  # class 3 written as 1
    >>> found = missing_val_classes(train, val)
    >>> found["missing"], found["taken_for"], found["due"]
    ([3], 1, 50.0)
    >>> missing_val_classes(train, torch.arange(200) % 4)
    {}
    >>> missing_val_classes(train, torch.arange(150) % 3)  # class 3 only in training
    {}
    >>> longtail = torch.tensor([0] * 90 + [1] * 60 + [2] * 30 + [1] * 20)  # and no class 3
    >>> missing_val_classes(train, longtail)  # class 2 is rarer too: no one class renamed
    {}
    >>> train = torch.arange(1000) % 6
    >>> two = torch.tensor([0, 1, 2, 1, 4, 2] * 40)  # 3 written as 1, 5 as 2
    >>> found = missing_val_classes(train, two)
    >>> found["missing"], found["taken_for"], found["takers"]
    ([3, 5], 1, [1, 2])
    >>> missing_val_classes(train, torch.arange(240) % 4)  # 4, 5 left out: all rise alike
    {}
    >>> part = torch.tensor([0, 1, 2, 1] * 60)  # 4, 5 left out, 3 written as 1
    >>> missing_val_classes(train, part)["takers"]
    [1]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["DUE", "OTHERS_ALIKE", "missing_val_classes", "missing_val_text"]

DUE = 20.0  # val labels a class's training share makes due before its absence counts
# the other classes' shares, each split's renormalised, at most this far apart (total
# variation) from training's or from even: a rename moves one class's labels and leaves
# the rest as they were
OTHERS_ALIKE = 0.15


def missing_val_classes(train: Tensor, val: Tensor) -> dict[str, Any]:
    """The classes absent from ``val`` labels that ``train``'s shares make due (``{}``: none).

    Figures: ``missing`` (the classes), ``due`` (the most val labels due of one of them),
    ``taken_for`` (the class over its training share by the most: at least half what was
    due, else ``{}``) with ``taken_share`` and ``taken_val_share``, ``val_labels`` (how
    many were read).
    """
    if train.numel() == 0 or val.numel() == 0 or train.min() < 0 or val.min() < 0:
        return {}
    k = int(max(train.max(), val.max())) + 1
    shares = torch.bincount(train.long(), minlength=k).double() / train.numel()
    counts = torch.bincount(val.long(), minlength=k).double()
    if k < 3 or bool(((counts > 0) & (shares == 0)).any()):  # a shift between the splits
        return {}
    due = shares * val.numel()
    missing = [c for c in range(k) if counts[c] == 0 and due[c] >= DUE]
    if not missing:
        return {}
    # the val split's own shares, where it is drawn balanced beside a long-tailed training
    # set (hunt 35), are even: the rename is read against either
    even = torch.full((k,), 1.0 / k, dtype=torch.float64)
    takers = (
        _takers(counts, shares, missing)
        or _takers(counts, even, missing)
        or _part_takers(counts, shares, missing)
        or _part_takers(counts, even, missing)
    )
    if takers is None:
        return {}
    taken = takers[0]
    return {
        "missing": missing,
        "due": round(float(max(due[c] for c in missing)), 1),
        "val_labels": float(val.numel()),
        "taken_for": taken,
        "takers": takers,
        "taken_share": round(float(shares[taken]), 4),
        "taken_val_share": round(float(counts[taken] / val.numel()), 4),
    }


def _takers(counts: Tensor, reference: Tensor, missing: list[int]) -> list[int] | None:
    """Each missing class's taker where ``counts`` read as a rename against ``reference``.

    Each missing class, the most due first, is taken for the class most over its share by
    at least half what was due, less what an earlier one took (hunt 36: three classes
    renamed). Their surplus must stand out: classes left out of val raise every other class
    alike (hunt 38: a val set of classes 0-5 only, rightly labelled, was told). The other
    classes keep ``reference``'s shares (within ``OTHERS_ALIKE``). ``None``: no rename.
    """
    due = reference * counts.sum()
    excess, takers = counts - due, []
    for c in sorted(missing, key=lambda c: -float(due[c])):
        taker = int(excess.argmax())
        if excess[taker] < 0.5 * float(due[c]):
            return None  # dropped, not renamed: a class only training has (a background class)
        takers.append(taker)
        excess[taker] -= due[c]
    others = [c for c in range(len(counts)) if c not in missing and c not in takers]
    if len(others) < 2:  # every class val holds read as a taker: nothing left to compare
        return None  # (hunt 41: a val set of classes 3, 5 and 8 only, rightly labelled)
    rise = max(float(counts[c] - due[c]) for c in others)
    least = min(float(counts[t] - due[t]) for t in takers)
    if least < rise + 0.5 * float(min(due[c] for c in missing)):
        return None
    if others and _apart(reference[others], counts[others]) > OTHERS_ALIKE:
        return None  # the val shares differ throughout from the reference's
    return takers


def _part_takers(counts: Tensor, reference: Tensor, missing: list[int]) -> list[int] | None:
    """The classes that took missing ones where val holds part of the classes (else None).

    A val set of part of the classes is read against ``reference``'s shares of the
    classes it holds; a class over that by half a missing class's share or more took one
    (hunt 39: val of classes 0-5 with 5 written as 3, or 0-7 with 7 as 1, told as
    overfitting: the whole rename reading fell where every class left rose alike). The
    others keep their shares (within ``OTHERS_ALIKE``) and the takers stand out.
    """
    held = counts > 0
    part = reference[held].sum()
    if part <= 0:
        return None
    due = reference / part * counts.sum()
    share = 0.5 * float(min(due[c] for c in missing))  # half of one missing class's labels
    excess, takers = torch.where(held, counts - due, torch.zeros_like(counts)), []
    while len(takers) < len(missing) and float(excess.max()) >= share:
        taker = int(excess.argmax())
        takers.append(taker)
        excess[taker] -= 2 * share
    others = [c for c in range(len(counts)) if held[c] and c not in takers]
    if not takers or len(others) < 2:
        return None
    rise = max(float(counts[c] - due[c]) for c in others)
    if min(float(counts[t] - due[t]) for t in set(takers)) < rise + share:
        return None
    if _apart(reference[others], counts[others]) > OTHERS_ALIKE:
        return None
    return takers


def _apart(train_shares: Tensor, val_counts: Tensor) -> float:
    """Total variation between two class distributions, each renormalised."""
    p, q = train_shares / train_shares.sum(), val_counts / val_counts.sum().clamp_min(1)
    return float((p - q).abs().sum() / 2)


def missing_val_text(f: dict[str, Any]) -> str:
    """The finding's sentence: which class is missing, how many were due, where they went."""
    names = ", ".join(str(c) for c in f["missing"])
    which = f"class {names} is" if len(f["missing"]) == 1 else f"classes {names} are"
    taken = (
        f"; class {f['taken_for']} has {f['taken_val_share']:.1%} of the val labels against "
        f"{f['taken_share']:.1%} of the training labels, as if they were written as it"
    )
    takers = list(dict.fromkeys(f.get("takers", [f["taken_for"]])))
    if len(takers) > 1:
        named = ", ".join(str(c) for c in takers)
        taken = (
            f"; classes {named} hold more of the val labels than of the training labels "
            f"(class {f['taken_for']}: {f['taken_val_share']:.1%} against "
            f"{f['taken_share']:.1%}), as if they were written as them"
        )
    if len(f.get("takers", takers)) < len(f["missing"]):  # a val set of part of the classes
        some = "one of them was" if len(f["takers"]) == 1 else "some of them were"
        taken = taken.replace("as if they were", f"as if {some}")
    return (
        f"The val labels lack a class the training labels hold: {which} absent from "
        f"{f['val_labels']:.0f} val labels where ~{f['due']:.0f} were due by the training "
        f"labels' shares{taken}. A label map applied to one split makes val accuracy and "
        "loss count right answers as wrong. Check that both splits read their labels the "
        "same way (the same class-to-index map)."
    )
