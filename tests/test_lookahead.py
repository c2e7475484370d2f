"""train.lookahead (imgclf.training.lookahead): the slow copy's moves, step by step, on a real Keras model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.training.lookahead import BASE_DECAY, EVERY, START_EPOCH, Lookahead, lookahead_decay

STEPS_PER_EPOCH, EPOCHS = 10, 5


def test_the_decay_warms_up_to_airbench_s_at_the_end():
    assert lookahead_decay(100, 100) == pytest.approx(BASE_DECAY ** EVERY)
    assert lookahead_decay(50, 100) == pytest.approx(BASE_DECAY ** EVERY / 8)


def model_with_batch_norm() -> keras.Model:
    inputs = keras.Input((1,))
    outputs = keras.layers.BatchNormalization()(keras.layers.Dense(1, use_bias=False)(inputs))
    model = keras.Model(inputs, outputs)
    model.predict(np.zeros((1, 1)), verbose=0)
    return model


def set_all(model: keras.Model, value: float) -> None:
    """Every float variable (the kernel, the batch norm's four) to ``value``: an optimizer's step, in effect."""
    for variable in model.variables:
        variable.assign(np.full(variable.shape, value, dtype="float32"))


def test_the_slow_copy_starts_at_epoch_3_moves_every_5_steps_and_ends_each_epoch():
    model = model_with_batch_norm()
    lookahead = Lookahead(STEPS_PER_EPOCH, EPOCHS)
    lookahead.set_model(model)
    seen = {}
    for step in range(1, STEPS_PER_EPOCH * EPOCHS + 1):
        set_all(model, float(step))  # the fast weights of this step
        lookahead.on_train_batch_end((step - 1) % STEPS_PER_EPOCH)
        seen[step] = [float(np.asarray(variable.value).ravel()[0]) for variable in model.variables]

    first = START_EPOCH * STEPS_PER_EPOCH + EVERY  # step 35: the slow copy is taken, nothing moves
    assert all(values == [float(step)] * 5 for step, values in seen.items() if step <= first)
    slow = float(first)
    decay = lookahead_decay(40, STEPS_PER_EPOCH * EPOCHS)
    slow = decay * slow + (1 - decay) * 40.0  # step 40: a move, and the epoch's end takes it
    assert seen[40] == pytest.approx([slow] * 5)
    assert seen[41] == [41.0] * 5  # between moves the model runs free
    decay = lookahead_decay(45, STEPS_PER_EPOCH * EPOCHS)
    slow = decay * slow + (1 - decay) * 45.0
    assert seen[45] == pytest.approx([slow] * 5)
    assert lookahead.slow is not None and float(lookahead.slow[0].ravel()[0]) == pytest.approx(seen[50][0])


def test_a_resumed_run_counts_its_steps_from_its_first_epoch():
    model = model_with_batch_norm()
    lookahead = Lookahead(STEPS_PER_EPOCH, EPOCHS, first_epoch=4)
    lookahead.set_model(model)
    for step in range(41, 46):
        set_all(model, float(step))
        lookahead.on_train_batch_end((step - 1) % STEPS_PER_EPOCH)
    assert lookahead.slow is not None  # step 45: past epoch 3, a multiple of 5: the copy is taken
