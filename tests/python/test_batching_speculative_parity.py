"""The Python checker (tools/moeref_golden.py) and `moeref compare` agree on batching and
speculative sets: the same report, tensor by tensor, status, note and numbers, and the same text.

Those sets' decisions are judged (golden/compare.cc, golden/decisions.cc): a batching set's
"step.s/sampled" rows and "request.id/tokens" on the request's logits row, sampling parameters and
Philox draw; a speculative set's proposals (judge_drawn on q), acceptance tests (judge_acceptance)
and final tokens (judge_drawn on the last p or the residual max(0, p - q)). After a differing
decision both checkers compare with the reference re-run on the candidate's decisions
(`moeref anchor`, golden/anchored_run.h); for a speculative set the blocks compared are then the
re-run's. Candidates with decisions of their own are made the honest way: by the reference
following those decisions (`moeref anchor` on them, its own choices taken after them), or by
`moeref candidate SET --emulate PRECISION`. Run by ctest with the rest of tests/python; by hand:

    MOEREF_CLI=build/tools/moeref PYTHONPATH=tools python3 -m unittest discover -s tests/python -v
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(os.environ.get("MOEREF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
CLI = os.environ.get("MOEREF_CLI", str(SOURCE_DIR / "build" / "tools" / "moeref"))
sys.path.insert(0, str(SOURCE_DIR / "tools"))

import moeref_golden as mg  # noqa: E402

SETS = SOURCE_DIR / "golden" / "sets"
BATCHING = SETS / "tiny-batching"
SPECULATIVE = SETS / "tiny-speculative"
TMP = Path()  # set by setUpModule
_DRAFT_PROPOSAL = 3  # ref/generation/philox.h, RandomStream::kDraftProposal


def setUpModule():
    global TMP
    if not Path(CLI).exists() and shutil.which(CLI) is None:
        raise AssertionError(f"the moeref CLI is not at {CLI}: build it, or set MOEREF_CLI")
    TMP = Path(tempfile.mkdtemp(prefix="moeref_parity_test."))


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def run_cli(*args, check=True):
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"moeref {' '.join(map(str, args))} exited {result.returncode}: "
                             f"{result.stderr}")
    return result


def copy_of_trace(golden: mg.GoldenSet) -> dict:
    return {e["name"]: golden.tensor(e["name"]).copy() for e in golden.expected}


def neighbour(probabilities, u: float, nearest: bool) -> int:
    """The token whose interval of the cumulative distribution `probabilities` (token-id order) is
    nearest to u without holding it (nearest=True), or farthest from it (nearest=False)."""
    low, best, chosen = 0.0, math.inf if nearest else -1.0, -1
    for token, p in enumerate(probabilities):
        high = low + p
        distance = low - u if u < low else u - high if u >= high else 0.0
        if p > 0.0 and distance > 0.0 and (distance < best if nearest else distance > best):
            best, chosen = distance, token
        low = high
    return chosen


class ParityCase(unittest.TestCase):
    """Writes a candidate, compares it with both checkers, demands the same report and text."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(dir=TMP))

    def same_verdicts(self, set_dir: Path, candidate, precision: str) -> dict:
        if isinstance(candidate, (str, Path)):
            path = Path(candidate)
        else:
            path = self.dir / "candidate.safetensors"
            mg.write_safetensors(path, candidate)
        options = ["--precision", precision]
        result = run_cli("compare", set_dir, path, "--json", *options, check=False)
        self.assertIn(result.returncode, (0, 1), result.stderr)
        cpp = json.loads(result.stdout)
        self.assertEqual(result.returncode, 0 if cpp["passed"] else 1)
        text = run_cli("compare", set_dir, path, *options, check=False).stdout
        report = mg.compare(set_dir, mg.read_safetensors_file(path), precision)
        python = report.to_dict()
        for key in ("set", "precision", "passed", "anchored", "compared", "first_failure",
                    "extra"):
            self.assertEqual(python[key], cpp[key], key)
        self.assertEqual([t["name"] for t in python["tensors"]],
                         [t["name"] for t in cpp["tensors"]])
        for p, c in zip(python["tensors"], cpp["tensors"]):
            for key, value in c.items():
                if value is None and isinstance(p[key], float):  # non-finite, written as null
                    self.assertFalse(math.isfinite(p[key]), (p["name"], key))
                elif isinstance(value, float):
                    self.assertTrue(math.isclose(p[key], value, rel_tol=1e-12, abs_tol=0),
                                    (p["name"], key, p[key], value))
                else:
                    self.assertEqual(p[key], value, (p["name"], key))
        self.assertEqual(report.to_text(), text)
        return cpp

    @staticmethod
    def status(report: dict, name: str) -> dict:
        return next(t for t in report["tensors"] if t["name"] == name)


class TheSetsThemselvesTest(ParityCase):
    def test_the_golden_tensors_pass_at_every_precision(self):
        for set_dir in (BATCHING, SPECULATIVE):
            golden = mg.GoldenSet(set_dir)
            self.assertIsNotNone(golden.weights)
            self.assertFalse(mg.needs_anchoring(golden, copy_of_trace(golden)))
            for precision in mg.PRECISIONS:
                with self.subTest(set=set_dir.name, precision=precision):
                    cpp = self.same_verdicts(set_dir, copy_of_trace(golden), precision)
                    self.assertTrue(cpp["passed"])
                    self.assertFalse(cpp["anchored"])

    def test_forcing_the_golden_decisions_reproduces_the_set(self):
        for set_dir in (BATCHING, SPECULATIVE):
            golden = mg.GoldenSet(set_dir)
            run = mg.anchored_run(golden, copy_of_trace(golden))
            for entry in golden.expected:
                with self.subTest(set=set_dir.name, tensor=entry["name"]):
                    np.testing.assert_array_equal(run[entry["name"]],
                                                  golden.tensor(entry["name"]))


class HonestEmulatedBackendTest(ParityCase):
    """`moeref candidate --emulate`: the set's scenario re-run with kernels computing at a
    precision, their own decisions included."""

    def emulated(self, set_dir: Path, precision: str) -> Path:
        path = self.dir / f"{set_dir.name}-{precision}.safetensors"
        run_cli("candidate", set_dir, "--emulate", precision, "--out", path)
        return path

    def test_speculative_at_bf16(self):
        path = self.emulated(SPECULATIVE, "bf16")
        cpp = self.same_verdicts(SPECULATIVE, path, "bf16")
        self.assertTrue(cpp["passed"], cpp["first_failure"])
        # the same run at fp32, which resolves what bf16 cannot: both checkers say the same
        self.same_verdicts(SPECULATIVE, path, "fp32")

    def test_batching_at_tf32(self):
        path = self.emulated(BATCHING, "tf32")
        cpp = self.same_verdicts(BATCHING, path, "tf32")
        self.assertTrue(cpp["passed"], cpp["first_failure"])
        # its sampled token next to the draw is a near-tie, the rest compared with the re-run
        self.assertTrue(cpp["anchored"])
        near = [t["name"] for t in cpp["tensors"] if t["status"] == "near_tie"]
        self.assertIn("request.1/tokens", near)
        self.assertTrue(any(name.endswith("/sampled") for name in near), near)
        self.same_verdicts(BATCHING, path, "fp32")

    def test_every_precision_on_both_sets(self):
        for set_dir in (BATCHING, SPECULATIVE):
            for precision in mg.PRECISIONS:
                with self.subTest(set=set_dir.name, precision=precision):
                    cpp = self.same_verdicts(set_dir, self.emulated(set_dir, precision),
                                             precision)
                    self.assertTrue(cpp["passed"], cpp["first_failure"])


class SpeculativeFlipsTest(ParityCase):
    """Proposals, acceptances and final tokens decided otherwise, near their draw and far."""

    @classmethod
    def setUpClass(cls):
        cls.golden = mg.GoldenSet(SPECULATIVE)
        # the sampled generation's proposal with the smallest margin
        blocks = cls.golden.manifest["margins"]["sampled_blocks"]
        _, cls.block, cls.index = min((margin, b, i) for b, block in enumerate(blocks)
                                      for i, margin in enumerate(block["proposals"]))
        cls.prefix = f"sampled/block.{cls.block}/"
        position = int(cls.golden.tensor(cls.prefix + "position")[0]) + cls.index
        seed = cls.golden.manifest["inputs"]["sampling"]["seed"]
        cls.u = mg.generation_uniform(seed, 0, position, 0, _DRAFT_PROPOSAL)
        cls.q = [float(p) for p in cls.golden.tensor(cls.prefix + "draft_probs")[cls.index]]

    def followed(self, mode: str, block: int, decisions: dict, reported: dict) -> dict:
        """What a backend that made `decisions` in block `block` of `mode` (the set's own in the
        blocks before it) computes: the reference following them (`moeref anchor`), its own
        choices after them; the candidate reports `reported` (name -> {index: value}) as its
        decisions, where the re-run records the reference's own choice."""
        fed = {}
        for b in range(block):
            for field in ("draft_tokens", "accepted", "final_token"):
                name = f"{mode}/block.{b}/{field}"
                fed[name] = self.golden.tensor(name)
        fed.update(decisions)
        run = mg.anchored_run(self.golden, fed)
        candidate = {name: np.array(value) for name, value in run.items()}
        for name, values in reported.items():
            for i, value in values.items():
                candidate[name][i] = value
        return candidate

    def proposal_flip(self, token: int) -> dict:
        name = self.prefix + "draft_tokens"
        proposals = np.append(self.golden.tensor(name)[:self.index], np.int32(token))
        return self.followed("sampled", self.block, {name: proposals.astype(np.int32)},
                             {name: {self.index: token}})

    def test_a_proposal_next_to_the_draw(self):
        name = self.prefix + "draft_tokens"
        candidate = self.proposal_flip(neighbour(self.q, self.u, True))
        self.assertTrue(mg.needs_anchoring(self.golden, candidate))
        cpp = self.same_verdicts(SPECULATIVE, candidate, "bf16")
        self.assertTrue(cpp["passed"], cpp["first_failure"])
        self.assertTrue(cpp["anchored"])
        self.assertEqual(self.status(cpp, name)["status"], "near_tie")
        self.assertEqual(cpp["extra"], [], "the re-run's blocks are the candidate's")
        cpp = self.same_verdicts(SPECULATIVE, candidate, "fp32")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], name)

    def test_a_proposal_far_from_the_draw(self):
        name = self.prefix + "draft_tokens"
        candidate = self.proposal_flip(neighbour(self.q, self.u, False))
        cpp = self.same_verdicts(SPECULATIVE, candidate, "bf16")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], name)
        self.assertIn("beyond the bf16 resolution", self.status(cpp, name)["note"])

    def test_a_flipped_proposal_in_the_golden_tensors(self):
        """A backend that reports another proposal but computes the set's blocks: re-anchored, the
        re-run's blocks are compared; both checkers fail it at the same tensor."""
        for nearest in (True, False):
            with self.subTest(nearest=nearest):
                candidate = copy_of_trace(self.golden)
                candidate[self.prefix + "draft_tokens"][self.index] = \
                    neighbour(self.q, self.u, nearest)
                cpp = self.same_verdicts(SPECULATIVE, candidate, "bf16")
                self.assertTrue(cpp["anchored"])
                self.assertFalse(cpp["passed"])

    def test_a_bug_after_a_legitimate_flip_still_fails(self):
        candidate = self.proposal_flip(neighbour(self.q, self.u, True))
        later = f"sampled/block.{self.block + 1}/target_probs"
        self.assertIn(later, candidate)
        candidate[later][0, 0] += 0.2
        candidate[later][0, 1] -= 0.2
        cpp = self.same_verdicts(SPECULATIVE, candidate, "bf16")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], later)

    def test_an_acceptance_decided_the_other_way(self):
        """The acceptance test farthest from its draw, and the nearest, decided the other way."""
        blocks = self.golden.manifest["margins"]["sampled_blocks"]
        tests = sorted((margin, b, i) for b, block in enumerate(blocks)
                       for i, margin in enumerate(block["acceptances"]))
        self.assertGreater(tests[-1][0], 0.1, "the case needs an acceptance far from its draw")
        for label, (_, b, i) in (("far", tests[-1]), ("near", tests[0])):
            with self.subTest(label):
                prefix = f"sampled/block.{b}/"
                name = prefix + "accepted"
                accepted = self.golden.tensor(name)[:i + 1].copy()
                accepted[i] = 1 - accepted[i]
                candidate = self.followed(
                    "sampled", b, {prefix + "draft_tokens": self.golden.tensor(
                        prefix + "draft_tokens"), name: accepted}, {name: {i: accepted[i]}})
                for precision in ("bf16", "fp32"):
                    cpp = self.same_verdicts(SPECULATIVE, candidate, precision)
                    self.assertTrue(cpp["anchored"])
                    if label == "far":
                        self.assertFalse(cpp["passed"])
                        self.assertEqual(cpp["first_failure"], name)
                        self.assertIn(f"beyond the {precision} resolution",
                                      self.status(cpp, name)["note"])

    def test_a_final_token_drawn_otherwise(self):
        """Each sampled block's final token replaced by the nearest and the farthest other token
        of the distribution it was drawn from; both checkers say the same of each."""
        b = 0
        while f"sampled/block.{b}/position" in self.golden.trace:
            prefix = f"sampled/block.{b}/"
            name = prefix + "final_token"
            kind = int(self.golden.tensor(prefix + "final_kind")[0])
            u = float(self.golden.tensor(prefix + "final_u")[0])
            p = self.golden.tensor(prefix + "target_probs").astype(np.float32)
            q = self.golden.tensor(prefix + "draft_probs").astype(np.float32)
            if kind == 1:
                weights = p[-1]
            else:
                i = self.golden.tensor(prefix + "accepted").size - 1
                residual = np.maximum(p[i] - q[i], np.float32(0))
                weights = residual if residual.max() > 0 else p[i]
            total = float(sum(float(w) for w in weights if w > 0))
            probabilities = [float(w) / total if w > 0 else 0.0 for w in weights]
            for nearest in (True, False):
                token = neighbour(probabilities, u, nearest)
                with self.subTest(block=b, kind=kind, nearest=nearest, token=token):
                    fed = {prefix + "draft_tokens": self.golden.tensor(prefix + "draft_tokens"),
                           prefix + "accepted": self.golden.tensor(prefix + "accepted"),
                           name: np.array([token], dtype=np.int32)}
                    candidate = self.followed("sampled", b, fed, {name: {0: token}})
                    self.same_verdicts(SPECULATIVE, candidate, "bf16")
            b += 1
        self.assertGreater(b, 1)

    def test_greedy_decisions_decided_otherwise(self):
        """The greedy generation's first proposal and first final token replaced by the second
        most probable token: judged as greedy tokens on q and p."""
        prefix = "greedy/block.0/"
        q = self.golden.tensor(prefix + "draft_probs")[0]
        runner_up = int(np.argsort(-q, kind="stable")[1])
        name = prefix + "draft_tokens"
        candidate = self.followed("greedy", 0, {name: np.array([runner_up], dtype=np.int32)},
                                  {name: {0: runner_up}})
        for precision in ("bf16", "fp32"):
            cpp = self.same_verdicts(SPECULATIVE, candidate, precision)
            self.assertTrue(cpp["anchored"])
            self.assertNotEqual(self.status(cpp, name)["status"], "pass")
        # a greedy final token, in the golden tensors otherwise
        flipped = copy_of_trace(self.golden)
        flipped[prefix + "final_token"][0] = (flipped[prefix + "final_token"][0] + 1) % q.size
        for precision in ("bf16", "fp32"):
            cpp = self.same_verdicts(SPECULATIVE, flipped, precision)
            self.assertTrue(cpp["anchored"])
        # the first greedy block that accepted its first proposal, rejecting it instead (its
        # "accepted" one element, as a backend that stopped there reports it): judged on p, the
        # proposal against the argmax
        b = next(b for b in range(len(self.golden.manifest["margins"]["greedy_blocks"]))
                 if self.golden.tensor(f"greedy/block.{b}/accepted")[:1].tolist() == [1])
        name = f"greedy/block.{b}/accepted"
        flipped = copy_of_trace(self.golden)
        flipped[name] = np.array([0], dtype=np.int32)
        for precision in ("bf16", "fp32"):
            cpp = self.same_verdicts(SPECULATIVE, flipped, precision)
            self.assertTrue(cpp["anchored"])
            self.assertIn("where token", self.status(cpp, name)["note"])

    def test_decisions_of_another_dtype_or_shape(self):
        """Float decision tensors are not followed (no re-run); a block the set does not have
        is (the candidate's blocks)."""
        candidate = copy_of_trace(self.golden)
        name = self.prefix + "draft_tokens"
        candidate[name] = candidate[name].astype(np.float32)
        self.assertFalse(mg.needs_anchoring(self.golden, candidate))
        self.same_verdicts(SPECULATIVE, candidate, "bf16")
        candidate = copy_of_trace(self.golden)
        candidate[name] = np.append(candidate[name], np.int32(0)).astype(np.int32)
        self.assertTrue(mg.needs_anchoring(self.golden, candidate))
        self.same_verdicts(SPECULATIVE, candidate, "bf16")


class BatchingFlipsTest(ParityCase):
    """Request 1 samples (temperature 0.9): its token with the smallest margin replaced by the
    nearest and the farthest other token of its distribution."""

    @classmethod
    def setUpClass(cls):
        cls.golden = mg.GoldenSet(BATCHING)
        margins = cls.golden.manifest["margins"]["requests"]["1"]
        cls.k = min(range(len(margins)), key=lambda k: (margins[k], k))
        request = next(r for r in cls.golden.manifest["requests"] if r["id"] == 1)
        sampling = request["sampling"]
        cls.u = mg.generation_uniform(sampling["seed"], 0, len(request["prompt"]) + cls.k, 1, 0)
        row = cls.golden.tensor("request.1/logits")[cls.k]
        cls.probabilities = [0.0] * row.size
        for token, p in mg.processed_distribution(row, sampling["temperature"],
                                                  sampling["top_k"], sampling["top_p"]):
            cls.probabilities[token] = p

    def flip(self, token: int) -> tuple[dict, str]:
        """What a backend that sampled `token` as request 1's token k computes: the schedule
        replayed on the set's tokens before it, `token`, then the reference's own choices, tokens
        and routing (re-run until the fed tokens and routing are the ones the reference chooses
        after them). Returns the candidate and the step tensor whose row carries the token."""
        tokens = self.golden.tensor("request.1/tokens").copy()
        tokens[self.k] = token
        routing = {e["name"]: self.golden.tensor(e["name"]) for e in self.golden.expected
                   if e["name"].endswith("moe.topk_indices")}
        while True:
            run = mg.anchored_run(self.golden, {"request.1/tokens": tokens, **routing})
            following = run["request.1/tokens"].copy()
            following[:self.k + 1] = tokens[:self.k + 1]
            moved = {name: run[name] for name, fed in routing.items()
                     if not np.array_equal(run[name], fed)}
            if np.array_equal(following, tokens) and not moved:
                break
            tokens = following
            routing.update(moved)
        candidate = {name: np.array(value) for name, value in run.items()}
        candidate["request.1/tokens"] = tokens
        seen, where = 0, None
        s = 0
        while f"step.{s}/sampled" in candidate:
            name = f"step.{s}/sampled"
            rows = candidate[name].reshape(-1, 2)
            for r in range(rows.shape[0]):
                if rows[r, 0] != 1:
                    continue
                rows[r, 1] = tokens[seen]
                if seen == self.k:
                    where = name
                seen += 1
            s += 1
        self.assertIsNotNone(where)
        return candidate, where

    def test_a_token_next_to_the_draw(self):
        candidate, step = self.flip(neighbour(self.probabilities, self.u, True))
        self.assertTrue(mg.needs_anchoring(self.golden, candidate))
        cpp = self.same_verdicts(BATCHING, candidate, "bf16")
        self.assertTrue(cpp["passed"], cpp["first_failure"])
        self.assertTrue(cpp["anchored"])
        for name in (step, "request.1/tokens"):
            self.assertEqual(self.status(cpp, name)["status"], "near_tie", name)
        cpp = self.same_verdicts(BATCHING, candidate, "fp32")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], step)

    def test_a_token_far_from_the_draw(self):
        candidate, step = self.flip(neighbour(self.probabilities, self.u, False))
        cpp = self.same_verdicts(BATCHING, candidate, "bf16")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], step)
        self.assertIn("beyond the bf16 resolution", self.status(cpp, step)["note"])

    def test_a_bug_after_a_legitimate_flip_still_fails(self):
        candidate, _ = self.flip(neighbour(self.probabilities, self.u, True))
        later = "request.3/logits"
        candidate[later] = candidate[later].copy()
        candidate[later].reshape(-1)[-1] += 5.0
        cpp = self.same_verdicts(BATCHING, candidate, "bf16")
        self.assertFalse(cpp["passed"])
        self.assertEqual(cpp["first_failure"], later)

    def test_flips_in_the_golden_tensors(self):
        """The set's tensors with request 1's token k changed in its request tensor only, and a
        step row naming another request: re-anchored, judged alike."""
        token = neighbour(self.probabilities, self.u, True)
        candidate = copy_of_trace(self.golden)
        candidate["request.1/tokens"][self.k] = token
        for precision in ("bf16", "fp32"):
            cpp = self.same_verdicts(BATCHING, candidate, precision)
            self.assertTrue(cpp["anchored"])
        candidate = copy_of_trace(self.golden)
        step = next(e["name"] for e in self.golden.expected
                    if e["name"].endswith("/sampled") and self.golden.tensor(e["name"]).size)
        candidate[step].reshape(-1)[0] += 1
        cpp = self.same_verdicts(BATCHING, candidate, "bf16")
        self.assertFalse(cpp["passed"])
        self.assertIn("where the schedule samples for request", self.status(cpp, step)["note"])

    def test_a_greedy_request_flipped(self):
        """A request that decodes greedily (temperature 0): its first token replaced by its
        runner-up, judged on the logits row with the logits' score tolerance."""
        greedy = [r for r in self.golden.manifest["requests"]
                  if r["sampling"]["temperature"] == 0.0]
        self.assertTrue(greedy, "the case needs a greedy request")
        request = greedy[0]["id"]
        row = self.golden.tensor(f"request.{request}/logits")[0]
        runner_up = int(np.argsort(-row, kind="stable")[1])
        candidate = copy_of_trace(self.golden)
        candidate[f"request.{request}/tokens"][0] = runner_up
        for precision in ("bf16", "fp32"):
            cpp = self.same_verdicts(BATCHING, candidate, precision)
            self.assertTrue(cpp["anchored"])


if __name__ == "__main__":
    unittest.main()
