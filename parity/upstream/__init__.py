"""The PtychoPINN sides: upstream's TensorFlow model (``ptycho``) and its PyTorch port
(``ptycho_torch``), run from a checkout the user names, unmodified.

* :mod:`.checkout`: where the checkout is (``--upstream PATH`` or ``PARITY_PTYCHOPINN``), and
  what it is (commit);
* :mod:`.translate`: one case config -> what each upstream model is given (``params.cfg``;
  ``ModelConfig`` / ``DataConfig`` / ``TrainingConfig`` and the forward's arguments), and the
  configs a model cannot express, refused with the reason;
* :mod:`.weightmap`: the neutral weight set -> each model's convolutions;
* :mod:`.ptycho_tf`, :mod:`.ptycho_torch`: the two sides, declared through :mod:`parity.byo`.

Nothing here imports a framework or the checkout at module import; the sides do, inside the
worker process that runs them.
"""
