from __future__ import annotations

import math
import time

import orjson
import pytest

from core.domain.serialization import to_json_value
from core.triad.contracts import (
    CONTRACT_VERSION,
    AdaptationCommand,
    Blueprint,
    CommandKind,
    ContractVersionMismatch,
    Germinate,
    HardwareContext,
    SeedStage,
    SeedState,
    SystemStatePacket,
    decode_packet,
    encode_packet,
)
from core.triad.events import DecisionMade, SeedSummary


def packet(seeds: int = 32, train_loss: float = 0.5) -> SystemStatePacket:
    states = tuple(
        SeedState(i, SeedStage(1 + i % 9), Blueprint.BOTTLENECK if i % 2 else None, 0.25, i, 2 * i, 0.1, None)
        for i in range(seeds)
    )
    return SystemStatePacket(
        epoch=3,
        global_step=96,
        train_loss=train_loss,
        val_loss=0.6,
        val_accuracy=0.7,
        learning_rate=0.01,
        gradient_norm=1.5,
        seeds=states,
        hardware=HardwareContext("cpu", 0.0),
        timestamp_ns=123,
        budget_overruns=1,
        conservative=True,
    )


def test_packet_round_trips_through_the_compact_encoding() -> None:
    """Decoding an encoded packet gives back an equal packet, seed states included."""
    original = packet()
    assert decode_packet(encode_packet(original)) == original


def test_non_finite_losses_survive_encoding_as_nan() -> None:
    """A NaN loss is encoded (as null) and decodes to NaN, so risk rules still see it."""
    decoded = decode_packet(encode_packet(packet(train_loss=math.nan)))
    assert math.isnan(decoded.train_loss)


def test_a_packet_of_another_version_is_refused() -> None:
    """A packet written under a different contract version is refused, not guessed at."""
    fields = orjson.loads(encode_packet(packet()))
    fields[0] = CONTRACT_VERSION + 1
    with pytest.raises(ContractVersionMismatch):
        decode_packet(orjson.dumps(fields))


def test_encoding_a_32_seed_packet_is_fast() -> None:
    """Encoding a packet with 32 seed states takes well under the seed's 80 us budget at p50."""
    value = packet(32)
    timings = []
    for _ in range(500):
        start = time.perf_counter_ns()
        encode_packet(value)
        timings.append(time.perf_counter_ns() - start)
    timings.sort()
    assert timings[len(timings) // 2] / 1000 < 80


def test_event_data_is_readable_json_without_nan() -> None:
    """Seed states and commands become JSON dicts with enum names and no NaN."""
    state = SeedState(1, SeedStage.TRAINING, Blueprint.LOW_RANK, 0.0, 1, 1, math.inf, None)
    data = to_json_value(SeedSummary.of(state))
    assert data["stage"] == "TRAINING" and data["blueprint"] == "LOW_RANK" and data["gradient_norm"] is None
    command = AdaptationCommand(5, 2, Germinate(0, Blueprint.RESIDUAL_MLP))
    assert command.kind is CommandKind.GERMINATE
    assert to_json_value(DecisionMade.of(command))["payload"]["blueprint"] == "RESIDUAL_MLP"
    orjson.dumps(to_json_value(DecisionMade.of(command)))
