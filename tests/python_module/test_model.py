"""moeref.Model, speculative_generate and Engine give what the C++ reference wrote into the
committed sets: traces under the sets' names, generations, speculative blocks and engine steps,
bit for bit (the sets are read with the numpy-only reader, tools/moeref_golden.py)."""

import numpy as np
import pytest

import moeref
import moeref_golden as mg
from conftest import MODEL_SETS, SOURCE_DIR


def bits_equal(actual, expected, name):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, name
    assert actual.tobytes() == expected.tobytes(), name


def model_of_set(golden):
    return moeref.Model(golden.manifest["config"], golden.dir / "weights.safetensors")


@pytest.mark.parametrize("case", ["tiny-gqa-mixed", "tiny-vision"])
def test_trace_has_the_model_sets_names_and_bits(case):
    golden = mg.GoldenSet(MODEL_SETS / case)
    inputs = golden.manifest["inputs"]
    image = golden.inputs.get("image")
    image_position = inputs["image"]["position"] if image is not None else 0
    traced = model_of_set(golden).trace(inputs["prompt"], inputs["decode_steps"], image,
                                        image_position)
    expected = [e["name"] for e in golden.expected if e["name"] != "sampled_tokens"]
    assert list(traced) == expected
    for name in expected:
        bits_equal(traced[name], golden.tensor(name), name)


def test_generate_gives_the_sets_sampled_tokens():
    golden = mg.GoldenSet(MODEL_SETS / "tiny-mqa-moe")
    inputs = golden.manifest["inputs"]
    sampling = inputs["sampling"]
    result = model_of_set(golden).generate(
        inputs["prompt"], inputs["sampled_tokens"], sampling["temperature"], sampling["top_k"],
        sampling["top_p"], sampling["seed"])
    assert result["tokens"] == golden.tensor("sampled_tokens").tolist()
    assert result["stopped_at_eos"] is False


def test_weights_from_a_dict_or_a_file_give_the_same_model(tiny_config, tmp_path):
    model = moeref.Model(tiny_config)
    model.save_weights(tmp_path / "weights.safetensors")
    from_dict = moeref.Model(tiny_config, {k: v.copy() for k, v in model.weights().items()})
    from_file = moeref.Model(tiny_config, tmp_path / "weights.safetensors")
    prompt = [3, 1, 4, 1, 5]
    expected = model.trace(prompt, 2)
    for other in (from_dict, from_file):
        traced = other.trace(prompt, 2)
        for name, value in expected.items():
            bits_equal(traced[name], value, name)
    assert model.config["d_model"] == 16


def test_model_from_a_config_file():
    model = moeref.Model(SOURCE_DIR / "configs" / "golden" / "tiny-mqa-moe.json")
    assert model.config["name"] == "tiny-mqa-moe"


def test_speculative_decoding_gives_the_sets_blocks():
    golden = mg.GoldenSet(MODEL_SETS / "tiny-speculative")
    inputs = golden.manifest["inputs"]
    target = moeref.Model(golden.manifest["target_config"])
    draft = moeref.Model(golden.manifest["draft_config"])
    sampling = inputs["sampling"]
    for mode, temperature in (("greedy", 0.0), ("sampled", sampling["temperature"])):
        result = moeref.speculative_generate(
            target, draft, inputs["prompt"], inputs["new_tokens"], inputs["gamma"],
            inputs["adaptive_gamma"], temperature, sampling["top_k"], sampling["top_p"],
            sampling["seed"], trace=True)
        assert result["tokens"] == golden.tensor(mode + "/tokens").tolist()
        for name, value in result["trace"].items():
            bits_equal(value, golden.tensor(mode + "/" + name), name)
        assert result["stats"]["blocks"] == golden.manifest["statistics"][mode]["blocks"]


def test_greedy_speculative_decoding_equals_plain_greedy(tiny_config):
    target = moeref.Model(tiny_config)
    draft = target.shallow_draft(1)
    prompt = [7, 7, 2, 9]
    plain = target.generate(prompt, 10)["tokens"]
    assert moeref.speculative_generate(target, draft, prompt, 10, gamma=3)["tokens"] == plain


def test_engine_steps_give_the_batching_sets_steps():
    golden = mg.GoldenSet(MODEL_SETS / "tiny-batching")
    m = golden.manifest
    model = moeref.Model(m["config"])
    engine = moeref.Engine(model, **m["limits"])
    for r in m["requests"]:
        s = r["sampling"]
        engine.submit(r["id"], r["prompt"], r["max_new_tokens"], s["temperature"], s["top_k"],
                      s["top_p"], s["seed"], r["arrival_step"])
    compared = 0
    while not engine.done():
        record = engine.step(trace=True)
        for name, value in record["trace"].items():
            bits_equal(value, golden.tensor("step.%d/%s" % (record["step"], name)), name)
            compared += 1
    assert compared == sum(1 for e in golden.expected if e["name"].startswith("step."))
    for request_id, outcome in engine.outcomes().items():
        assert outcome["status"] == "finished"
        bits_equal(np.array(outcome["tokens"], np.int32),
                   golden.tensor("request.%d/tokens" % request_id), "tokens")
        bits_equal(outcome["logits"], golden.tensor("request.%d/logits" % request_id), "logits")
    assert engine.summary() == m["summary"]


def test_the_vision_tower_gives_the_sets_encoding():
    golden = mg.GoldenSet(MODEL_SETS / "tiny-vision")
    traced = model_of_set(golden).encode_image(golden.inputs["image"])
    image_names = [e["name"] for e in golden.expected if e["name"].startswith("image/")]
    assert ["image/" + name for name in traced] == image_names
    for name, value in traced.items():
        bits_equal(value, golden.tensor("image/" + name), name)
