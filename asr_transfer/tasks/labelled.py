"""Tasks whose outputs are a list of named labels (classes, tags, frame labels): the sizes come from
the prepared data, and the label names travel in the checkpoint, so eval and predict rebuild the same
outputs in the same order."""

from __future__ import annotations

from typing import ClassVar

from asr_transfer.tasks.base import TransferTask


class LabelledTask(TransferTask):
    """``TransferTask`` with ``num_classes`` and the label names taken from the data's targets, stored in
    and read back from the checkpoint. ``names_key``: the constructor argument, attribute and checkpoint key
    that hold them ("labels"; "speakers" for verification)."""

    names_key: ClassVar[str] = "labels"

    @classmethod
    def data_kwargs(cls, datamodule) -> dict:
        labels = datamodule.targets.labels
        return {"num_classes": len(labels), cls.names_key: labels}

    @classmethod
    def checkpoint_kwargs(cls, state: dict) -> dict:
        labels = state["asr_transfer"][cls.names_key]
        return {"num_classes": len(labels), cls.names_key: labels}

    def extra_checkpoint_state(self) -> dict:
        return {self.names_key: getattr(self, self.names_key)}
