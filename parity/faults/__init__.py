"""The fault catalogue of the self-test: named, documented, reversible bugs of the port.

Each :class:`Fault` models one mistake that a PyTorch port of the reference can make (most are
the real ones of upstream PtychoPINN's port, ``upstream-ptychopinn.md`` §5). It is applied at
run time by monkeypatching attributes of the ``torch_impl`` modules and classes, never by a
switch inside ``torch_impl``::

    from parity.faults import inject
    with inject("merge_offset_sign"):
        ...  # torch_impl computes the merge with the wrong sign here
    # everything restored here, also after an exception

``inject_all(names)`` applies several at once; ``Job(faults=...)`` and ``run_case(faults=...)``
use it, so ``execute`` runs the port under faults in-process and in workers alike (a job's
build happens inside the block, so build-time faults apply there too).

Patches go where the lookup happens: ``torch_impl.model`` calls the physics as
``physics.merge_patches(...)`` (module attribute, so patching ``torch_impl.physics`` works),
and the physics functions call each other through their module globals (``translate``,
``_reflect_pad1``, ...). Two kinds of patch exist:

* run-time patches (a physics function, a module's ``forward``, ``ForwardModel._compute``, the
  ``ModelConfig.M`` property): they change models that already exist;
* build-time patches (``network._conv3x3``, ``network.amplitude_activation``,
  ``network.phase_activation``, ``weights.KERNEL_TO_TORCH``): they only change models built
  inside the ``with`` block. The self-test builds the port inside the block whenever
  ``fault.network`` is True.

Each fault declares the stage where the harness must first see it (``expected_stage``), the
cases where it can show at all (``applies``, a predicate over :class:`parity.cases.Case`;
e.g. the smoothing fault needs sigma > 0) and ``network``: whether it can change the network
stages (latent, amp, phase). Faults with ``network=False`` leave those stages bitwise unchanged
(``tests/unit/test_faults.py`` checks it), which lets the self-test reuse the clean port's
network stages.

*Backward-only* faults (``kind="backward"``, :data:`BACKWARD_FAULTS`) leave every forward
stage bit for bit the clean port's and break only the gradient; ``expected_stage`` is then the
adjoint stage where the gradient first goes wrong in reverse pipeline order and
``expected_weight`` the weight whose gradient goes wrong before any stage's, if one does. They
are not in :data:`FAULTS` (the forward self-test's catalogue, which they would pass), but
``get_fault``, ``inject`` and jobs take their names like any other.
:mod:`.gradprobe` differentiates the port (stage and weight gradients) to show them.

The package: :mod:`.core` (the Fault record, applicability predicates, inject / inject_all,
snapshot), :mod:`.patches` (the faulty implementations), :mod:`.catalogue` (the entries,
FAULTS, get_fault), :mod:`.backward` (the backward-only faults) and :mod:`.gradprobe`. PyTorch is imported lazily (inside the patches), so ``parity.faults`` can be
imported to list the catalogue without a framework.
"""
from __future__ import annotations

from .catalogue import ALL_FAULTS, BACKWARD_FAULT_NAMES, BACKWARD_FAULTS, FAULT_NAMES, FAULTS, applicable_cases, get_fault
from .core import NETWORK_STAGES, PATCHED_SIDE, Applies, Fault, UnknownFault, inject, inject_all, offsets_kind, snapshot

__all__ = ["ALL_FAULTS", "Applies", "BACKWARD_FAULTS", "BACKWARD_FAULT_NAMES", "FAULTS", "FAULT_NAMES", "Fault",
           "NETWORK_STAGES", "PATCHED_SIDE", "UnknownFault", "applicable_cases", "get_fault", "inject", "inject_all",
           "offsets_kind", "snapshot"]
