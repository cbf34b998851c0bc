"""``maskdepth doctor``: the options are :class:`maskdepth.doctor.DoctorOptions`'s fields."""

from __future__ import annotations

from maskdepth import doctor

from . import Command

add_arguments = doctor.add_arguments
run = doctor.run

COMMAND = Command(
    "doctor",
    "what this machine can do: GPU, CUDA, onnxruntime, TensorRT",
    doctor.DoctorOptions,
    run,
    description="One line per capability (GPU, driver, CUDA in PyTorch, onnxruntime "
    "providers, TensorRT flavours, engine targets), with the reason when it cannot.",
    add_arguments=add_arguments,
)
