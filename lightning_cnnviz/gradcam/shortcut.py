"""Shortcut findings: when Grad-CAM leaves the object, over time or on training images only.

Nothing here knows about Lightning. The rules read ``gradcam/{train,val}/on_object``
(``gradcam.metrics``; ``on_object_hirescam`` when the drawn CAMs are not HiResCAM) log
by log and keep their state in a plain dict (checkpointed by the monitor):

* ``cam_off_object``: train ``on_object`` fell below half its first value, or more
  than 0.2 below its running maximum, 2 logs in a row, while the model does not need
  the object (``fell_off``, ``gates.needs_object``); a note once it is back;
* ``cam_shortcut``: train ``on_object`` (scaled to the val probe's object size,
  ``on_val_scale``) stayed below val's by 0.1 and below 0.75x of it for 2 logs in a row
  (``train_val_gap``), while the model does not need the object on training images
  (``gates.needs_object``, where measured). Train and val images come from the same
  distribution, so a CAM that leaves the object on training images only points at a cue
  that only training images carry;
* ``cam_shortcut`` (``splits="both"``): on both splits ``on_object`` stayed below
  ``AREA_RATIO`` x the object's share of the image area (``object_share``: a CAM spread evenly over
  the image would score it) for 2 logs in a row (``below_area``). A CAM no more on the
  object than chance, on every image, validation included, means the model reads
  something else, a cue present on both splits (``train_val_gap`` cannot see it: no
  gap). Only for an object of at most a third of the image (``BOTH_MAX_OBJECT_SHARE``):
  on larger ones healthy CAMs sit too close to the share. Where the val probe's
  accuracy lags far behind the training probe's (``gates.val_lags``), the model looks
  for the cue on val images too and finds none: a cue only training images carry
  (``splits="train"``);
* ``cam_shortcut`` (``splits="outside"``): with each training probe image's object
  replaced by its background the model still classifies past halfway from chance to all
  of them right (``right_without_object``, ``gates.needs_object``; 3 classes or more)
  for 2 logs in a row (``kept_without``), whatever its CAM: the class is read elsewhere
  (it waits while the CAM is lower on training images than on val: the rule above will
  name the split).
  Held out: a class-coded patch along the top or bottom edge on both splits (100% val,
  57% without the patch) kept 62% of the digits right without them (healthy digit nets
  12%), while HiResCAM put 1.25x the object's share of its mass on the object (the
  patch as bright as the strokes), and nothing was said.

All three judge a log only where its map can say something (``gradcam.gates``: the
training probe classified right in eval mode, an object small enough on a map fine
enough, and for the both-splits rule a model that does not need the object). Measured
(MNIST digits, 8 probe images, HiResCAM at the last conv block): healthy runs 1.6-2.1x
the area share; 0.90-0.96x with a label-coding marker on both splits from step 10 (when
56% of cue-swapped digits follow the cue).

Example::

    >>> state = {}
    >>> [kind for train, val in ((0.3, 0.3), (0.12, 0.3), (0.1, 0.3))
    ...  for kind, *_ in on_object_findings(state, train, val)]
    ['cam_off_object', 'cam_shortcut']
    >>> state, areas = {}, (0.2, 0.2)
    >>> [(kind, figures["splits"]) for pair in ((0.2, 0.21), (0.19, 0.2))
    ...  for kind, _, figures in on_object_findings(state, *pair, areas)]
    [('cam_shortcut', 'both')]
    >>> on_object_findings({}, 0.01, 0.3, accuracy=0.25)  # wrong on its own images: silent
    []
"""

from __future__ import annotations

from typing import Any

from lightning_cnnviz.gradcam.gates import area_blocker, learnt, needs_object, val_lags
from lightning_cnnviz.gradcam.shortcut_rules import (
    AREA_PATIENCE,
    DROP_MARGIN,
    DROP_PATIENCE,
    DROP_RATIO,
    GAP_MARGIN,
    GAP_PATIENCE,
    GAP_RATIO,
    below_area,
    fell_off,
    kept_without,
    lower_on_train,
    on_val_scale,
    train_val_gap,
)

__all__ = ["on_object_findings", "on_object_text"]


def on_object_findings(
    state: dict[str, Any],
    train: float | None,
    val: float | None = None,
    areas: tuple[float | None, float | None] = (None, None),
    accuracy: float | None = None,
    cells: float | None = None,
    hw: tuple[int, int] | None = None,
    without: tuple[float | None, int | None] = (None, None),
    val_accuracy: float | None = None,
    commonest: float | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """What the train (and val) ``on_object`` of one log tell: ``[(kind, message, figures)]``.

    ``cam_off_object``: train ``on_object`` fell (``fell_off`` with ``DROP_RATIO``,
    ``DROP_MARGIN``, ``DROP_PATIENCE``; not while the model needs the object), and once it
    is back (``figures["back"]``: the finding becomes a note). ``cam_shortcut``: it stayed
    below val's, scaled to the val probe's object size (``on_val_scale``; ``train_val_gap``
    with ``GAP_MARGIN``, ``GAP_RATIO``, ``GAP_PATIENCE``; ``splits="train"``; not while the
    model needs the object), or both stayed below ``AREA_RATIO`` x the object's share of the
    area (``areas``: train and val ``object_share``; ``below_area``; ``splits="both"``).
    ``state`` is updated in place, except while ``accuracy`` (the training probe's, in eval
    mode) is too low (``learnt``: ``gates.MIN_PROBE_ACC``, ``OVER_CHANCE`` x chance), the
    foreground mask covers most of the image or the map (``hw``) has fewer than
    ``MIN_MAP_SIDE`` cells a side (``area_blocker``): then the log is skipped, as if it had
    not happened. The both-splits rule runs only where ``area_blocker(..., both=True)``
    finds nothing against it (an object of at most ``BOTH_MAX_OBJECT_SHARE`` of the image,
    on at least ``MIN_OBJECT_CELLS`` ``cells`` of the CAM's map), and not while the model
    needs the object (``without``: ``right_without_object`` on the training probe and the
    class count, ``needs_object``): a CAM about as much on the object as anywhere, from a
    model that loses its class without the object, is no cue elsewhere. Where the val
    probe's eval-mode ``val_accuracy`` lags far behind ``accuracy`` (``val_lags``), the cue
    it reads on both splits is one validation images lack, and said so.
    """
    if train is None or not learnt(accuracy, without[1], commonest):
        return []
    if area_blocker(areas, hw=hw):  # the mask covers most of the image, or the map is too
        # coarse to place the object: on_object means nothing; the object removed reads
        # no map (hunt 51: a timm ResNet's 2x2 map, right on 62% of its training images
        # without their digit, a cue placed by the label, and no shortcut check ran)
        right, classes = without
        coarse = not area_blocker(areas, both=True)  # the image's gates alone
        if coarse and right is not None and classes and kept_without(state, right, classes):
            return [outside_finding(right, classes, None, areas[0])]
        return []
    found: list[tuple[str, str, dict[str, Any]]] = []
    needed = needs_object(*without)
    fell = fell_off(state, train, DROP_RATIO, DROP_MARGIN, DROP_PATIENCE)
    first, best = state["first"], state["max"]
    figures = {"on_object": train, "first": first, "max": best}
    if fell and not needed:  # a model that loses its class without the object reads it
        message = (
            f"Grad-CAM moved off the object: {train:.2f} of its mass lies on the object "
            f"(first log {first:.2f}, best {best:.2f}; {DROP_PATIENCE} logs in a row); the "
            "model may be learning a shortcut"
        )
        found.append(("cam_off_object", message, figures))
        state["off_told"] = True
    elif state.get("off_told") and not state["low"]:
        message = (
            f"Grad-CAM is back on the object: {train:.2f} of its mass lies on the object "
            f"(first log {first:.2f}, best {best:.2f})"
        )
        found.append(("cam_off_object", message, figures | {"back": True}))
        state["off_told"] = False
    fair = on_val_scale(train, areas)
    if needed:  # the model loses its class without the object: no cue elsewhere
        state["gap_run"] = 0
    elif val is not None and train_val_gap(state, fair, val, GAP_MARGIN, GAP_RATIO, GAP_PATIENCE):
        sizes = (
            f" (objects covering {areas[0]:.2f} and {areas[1]:.2f} of the image)"
            if areas[0] and areas[1]
            else ""
        )
        message = (
            f"Grad-CAM looks off the object on training images only: {train:.2f} of its mass "
            f"lies on the object there vs {val:.2f} on validation images{sizes} "
            f"({GAP_PATIENCE} logs in a row); the model relies on a cue that only training "
            "images carry (a shortcut)"
        )
        figures = {"on_object": train, "val_on_object": val, "splits": "train"}
        found.append(("cam_shortcut", message, figures))
    fine = not area_blocker(areas, cells, hw, both=True)
    if (
        val is not None
        and None not in areas
        and fine
        and below_area(state, (train, val), areas, needed=needed)  # type: ignore[arg-type]
    ):
        area, val_area = areas
        lags = val_lags(accuracy, val_accuracy, without[1])
        cue = (  # the model looks for its cue in the same place on val images, finds none
            f"a cue that validation images lack: the val probe's accuracy is "
            f"{val_accuracy:.0%} against {accuracy:.0%} on the training probe (a shortcut "
            "that only training images carry)"
            if lags
            else "a cue that validation images carry too (a shortcut), so validation "
            "accuracy cannot reveal it"
        )
        message = (
            f"Grad-CAM is not on the object, on training and validation images alike: {train:.2f} "
            f"(train) and {val:.2f} (val) of its mass lies on the object, which covers "
            f"{area:.2f} and {val_area:.2f} of the image: about what a CAM spread evenly "
            f"would give ({AREA_PATIENCE} logs in a row); the model relies on {cue}"
        )
        figures = {"on_object": train, "val_on_object": val, "object_share": area}
        if without[0] is not None:
            message += (
                f"; it still classifies {without[0]:.0%} of the training probe's images right "
                "with their object removed"
            )
            figures["right_without_object"] = without[0]
        figures |= {"val_object_share": val_area, "splits": "train" if lags else "both"}
        if lags:
            figures |= {"probe_accuracy": accuracy, "val_probe_accuracy": val_accuracy}
        found.append(("cam_shortcut", message, figures))
    right, classes = without
    kept = right is not None and classes and fine and kept_without(state, right, classes)
    # a CAM already lower on training images than on val: the train-only rule will name
    # the split (a cue on training images only); the model's accuracy alone cannot
    apart = val is not None and lower_on_train(fair, val)
    if kept and not apart and not any(kind == "cam_shortcut" for kind, *_ in found):
        found.append(outside_finding(right, classes, train, areas[0]))  # type: ignore[arg-type]
    return found


def outside_finding(
    right: float, classes: int, on_object: float | None, area: float | None
) -> tuple[str, str, dict[str, Any]]:
    """The ``cam_shortcut`` of a model that keeps its class with the object removed.

    ``on_object``: ``None`` where the CAM's map is too coarse to place the object.
    """
    cam = "" if on_object is None else f"{on_object:.2f} of its mass on the object"
    cam += f", which covers {area:.2f} of the image" if cam and area is not None else ""
    message = (
        "The model reads the class from outside the object: with the object of each "
        f"training probe image replaced by its background it still classifies {right:.0%} "
        f"of them right (chance {1 / classes:.0%}), {AREA_PATIENCE} logs in a row"
        + (f" (Grad-CAM puts {cam})" if cam else "")
        + ". A cue elsewhere in the image carries the label (a marker, a border, "
        "a watermark, a background); if validation images carry it too, validation "
        "accuracy cannot reveal it"
    )
    figures = {"right_without_object": right, "splits": "outside"}
    figures |= {"on_object": on_object} if on_object is not None else {}
    return "cam_shortcut", message, figures | ({"object_share": area} if area else {})


def on_object_text(message: str, step: int, epoch: int) -> str:
    """The ``gradcam/diagnosis`` text of an ``on_object_findings`` message: when, what, remedies.

    Example::

        >>> on_object_text("Grad-CAM moved off the object", 50, 1)[:48]
        'Grad-CAM at step 50 (epoch 1): Grad-CAM moved of'
    """
    return (
        f"Grad-CAM at step {step} (epoch {epoch}): {message}.\n\n"
        "Compare `gradcam/train` with `gradcam/val`: what the training CAMs light up off the "
        "object is the cue. Remove it from the training images (or add it to the validation "
        "images to measure how much the model depends on it), augment it away (random crops, "
        "cutout, colour jitter), or balance the data so that it no longer predicts the label."
    )
