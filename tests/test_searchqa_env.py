"""The search-QA environment: question lists, turn rules, reward, expert and random agents."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from environments.searchqa.answers import normalize_answer
from environments.searchqa.datasets import DATASETS, eval_questions, subset_indices, train_questions
from environments.searchqa.env import INVALID_OBSERVATION, SearchQAEnv, parse_env_action
from opid_gym.evaluate import eval_task_indices
from opid_gym.parsing import parse_search_answer


@pytest.fixture(scope="session")
def search_data(data_root: Path) -> Path:
    if not (data_root / "search_qa" / "Ning-Guo__hotpotqa-agent").is_dir():
        pytest.skip("search_qa data not present under the data root")
    pytest.importorskip("bm25s")
    pytest.importorskip("Stemmer")
    return data_root


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("search_index"))


def make_env(search_data: Path, index_dir: str, **kw) -> SearchQAEnv:
    return SearchQAEnv(**{"dataset": "hotpotqa", "data_root": str(search_data), "index_dir": index_dir, **kw})


# -------------------------------------------------------------------- question lists
def test_offline_evaluation_lists(search_data: Path) -> None:
    # sizes from shared/data/search_qa/SOURCE.md; lists longer than 1000 are cut to 1000
    sizes = {"nq": (1000, 1000), "triviaqa": (1000, 1000), "popqa": (1000, 1000), "bamboogle": (125, 125),
             "hotpotqa": (1000, 7405), "2wiki": (1000, 12576), "musique": (1000, 2417)}
    for d in DATASETS:
        ql = eval_questions(d, search_data)
        assert (len(ql.questions), ql.source_size) == sizes[d], d
        assert len({q.task_id for q in ql.questions}) == len(ql.questions), f"{d}: task ids not unique"
        assert all(q.answers and q.question.endswith("?") for q in ql.questions)
    full = eval_questions("musique", search_data, max_questions=None)
    assert len(full.questions) == 2417


def test_subset_is_fixed_and_in_file_order() -> None:
    a = subset_indices(7405, 1000)
    assert a == subset_indices(7405, 1000) and a == sorted(a) and len(set(a)) == 1000
    assert subset_indices(125, 1000) == list(range(125))


def test_offline_train_lists_are_disjoint_from_evaluation(search_data: Path) -> None:
    nq, hotpot = train_questions(("nq", "hotpotqa"), search_data)
    assert len(nq.questions) == 3610 - 1000  # NQ-open test minus the 1000 evaluation questions
    held_out = {q.question.lower() for q in eval_questions("nq", search_data).questions}
    assert not held_out & {q.question.lower() for q in nq.questions}
    assert len(hotpot.questions) == 500 and hotpot.source.endswith("grpo_val.jsonl")
    env = SearchQAEnv("train", data_root=str(search_data))
    assert env.num_tasks == 3110 and set(env.task_types()) == {"nq", "hotpotqa"}


def test_flashrag_layout_takes_precedence(tmp_path: Path) -> None:
    folder = tmp_path / "search_qa" / "FlashRAG_datasets" / "2wikimultihopqa"
    folder.mkdir(parents=True)
    rows = [{"id": f"dev_{i}", "question": f"question {i}", "golden_answers": [f"answer {i}"]} for i in range(3)]
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = SearchQAEnv("2wiki", data_root=str(tmp_path))
    assert env.task_ids() == ["2wiki/dev_0", "2wiki/dev_1", "2wiki/dev_2"]
    assert env.questions[1].question == "question 1?" and env.questions[1].answers == ("answer 1",)
    assert env.sources["2wiki"] == str(folder / "dev.jsonl")


def test_search_r1_parquet_layout(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "search_qa" / "nq_hotpotqa_train"
    folder.mkdir(parents=True)
    table = pa.table({
        "id": ["a", "b", "c"], "question": ["q nq", "q hotpot", "q nq 2"],
        "golden_answers": [["x"], ["y"], ["z", "zz"]], "data_source": ["nq", "hotpotqa", "nq"],
    })
    pq.write_table(table, folder / "train.parquet")
    nq, hotpot = train_questions(("nq", "hotpotqa"), tmp_path)
    assert [q.qid for q in nq.questions] == ["a", "c"] and nq.questions[1].answers == ("z", "zz")
    assert [q.qid for q in hotpot.questions] == ["b"]


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    from opid_gym.data import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="FlashRAG_datasets"):
        SearchQAEnv("nq", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown search-QA data set"):
        SearchQAEnv("squad", data_root=str(tmp_path))


# ----------------------------------------------------------------------- turn rules
@pytest.mark.parametrize("response,kind,valid", [
    ("<think>x</think><search>capital of France</search>", "search", True),
    ("<answer>Paris</answer>", "answer", True),
    # the reference (OPID's search projection) flags these invalid but executes the first block
    ("<search>capital</search><answer>Paris</answer>", "search", False),     # both tags
    ("<search>a</search> then <search>b</search>", "search", False),          # repeated tag
    ("<answer>a</answer><answer>b</answer>", "answer", False),                # repeated tag
    ("I think it is Paris.", "invalid", False),                               # neither
    ("<search>   </search>", "search", True),                                 # empty search is a search
])
def test_parsing_validity_reaches_the_env(response: str, kind: str, valid: bool) -> None:
    parsed = parse_search_answer(response)
    assert parsed.valid == valid
    assert parse_env_action(parsed.action)[0] == kind
    assert parse_env_action(response)[0] == kind  # raw tagged text is accepted as well


def test_invalid_turn_is_used_up_with_an_empty_observation(search_data: Path, index_dir: str) -> None:
    env = make_env(search_data, index_dir)
    env.reset(seed=0, options={"task_index": 0})
    obs, reward, term, trunc, info = env.step(parse_search_answer("no block here").action)
    assert obs == INVALID_OBSERVATION == "" and reward == 0.0 and not term and not trunc
    assert info["invalid"] is True and info["step"] == 1
    # both tags: the search block runs and its documents come back
    obs, _, term, _, info = env.step(parse_search_answer("<search>Party Never Ends</search><answer>b</answer>").action)
    assert obs.startswith("<information>") and not term and info["invalid"] is False


def test_search_returns_the_reference_information_block(search_data: Path, index_dir: str) -> None:
    env = make_env(search_data, index_dir)
    env.reset(seed=0, options={"task_index": 0})
    obs, reward, term, trunc, info = env.step("search[Party Never Ends Romanian singer]")
    assert obs.startswith('<information>{"result": "Doc 1: ') and obs.endswith('\\n"}</information>')
    result = json.loads(obs[len("<information>"):-len("</information>")])["result"]
    lines = result.split("\n")
    docs = [i for i, line in enumerate(lines) if line.startswith("Doc ")]
    assert [lines[i].split(":")[0] for i in docs] == ["Doc 1", "Doc 2", "Doc 3"]
    # "Doc i: <title>" then the passage text on the next line, as the corpus' contents
    hits = env.retriever.search("Party Never Ends Romanian singer", 3)
    assert result == "".join(f"Doc {i}: {h.passage.title}\n{h.passage.text}\n" for i, h in enumerate(hits, 1))
    assert len(info["passages"]) == 3 and not term and not trunc and reward == 0.0
    obs, *_ = env.step("search[]")  # an empty query is searched; BM25 matches nothing
    assert obs == '<information>{"result": "No search results found."}</information>'


def test_nfc_answer_normalization_is_opt_in(search_data: Path, index_dir: str) -> None:
    import unicodedata

    for norm, expected in (("search-r1", 0.0), ("nfc", 1.0)):
        env = make_env(search_data, index_dir, answer_normalization=norm)
        env.reset(seed=0, options={"task_index": 5})
        env.questions[5] = dataclasses.replace(env.questions[5], answers=("École",))
        env._question = env.questions[5]
        _, reward, *_ = env.step(f"answer[{unicodedata.normalize('NFD', 'école')}]")
        assert reward == expected, norm
    with pytest.raises(ValueError, match="answer_normalization"):
        make_env(search_data, index_dir, answer_normalization="nfkc")


def test_turn_limit_is_truncation_not_termination(search_data: Path, index_dir: str) -> None:
    env = make_env(search_data, index_dir, max_steps=4)
    _, info = env.reset(seed=0, options={"task_index": 3})
    for turn in range(1, 5):
        _, reward, term, trunc, info = env.step(f"search[query number {turn}]")
        assert not term and reward == 0.0
        assert trunc == (turn == 4)
    assert info["em"] == 0.0 and info["searches"] == 4 and info["gold_answers"]
    with pytest.raises(RuntimeError):
        env.step("answer[too late]")


def test_answer_terminates_with_exact_match_reward(search_data: Path, index_dir: str) -> None:
    env = make_env(search_data, index_dir)
    _, info = env.reset(seed=0, options={"task_index": 5})
    gold = env.questions[5].answers[0]
    _, reward, term, trunc, info = env.step(f"answer[  The {gold.upper()}!! ]")
    assert (reward, term, trunc, info["won"]) == (1.0, True, False, True)
    assert info["question_type"] == "multi-hop" and info["dataset"] == "hotpotqa"
    env.reset(seed=0, options={"task_index": 5})
    _, reward, term, _, info = env.step("answer[certainly not the answer]")
    assert (reward, term, info["won"], info["em"]) == (0.0, True, False, 0.0)


def test_expert_action_searches_then_answers(search_data: Path, index_dir: str) -> None:
    env = make_env(search_data, index_dir)
    env.reset(seed=0, options={"task_index": 2})
    q = env.questions[2]
    assert env.expert_action() == f"search[{q.question}]"
    env.step(env.expert_action())
    assert env.expert_action() == f"answer[{q.answers[0]}]"
    _, reward, term, _, _ = env.step(env.expert_action())
    assert reward == 1.0 and term


# ------------------------------------------------------------------ whole benchmark
def test_stratified_limit_takes_each_type() -> None:
    types = ["a"] * 10 + ["b"] * 4 + ["c"] * 30
    chosen = eval_task_indices(len(types), 5, types)
    assert [types[i] for i in chosen].count("a") == 5
    assert [types[i] for i in chosen].count("b") == 4
    assert [types[i] for i in chosen].count("c") == 5
    assert chosen == eval_task_indices(len(types), 5, types)
    assert eval_task_indices(10, 3) == eval_task_indices(10, 3, ["x"] * 10)  # one type = the plain subset


def test_expert_gets_em_one_on_every_dataset(search_data: Path, index_dir: str) -> None:
    import opid_gym
    from opid_gym.agent import make_agent
    from opid_gym.evaluate import evaluate

    bench = opid_gym.BENCHMARKS.get("searchqa")
    summary, trajs = evaluate(bench, make_agent("expert"), env_kwargs={"data_root": str(search_data),
                                                                       "index_dir": index_dir}, limit=3)
    assert set(summary.per_type) == set(DATASETS)
    assert all(s["episodes"] == 3 and s["success_rate"] == 1.0 for s in summary.per_type.values())
    assert summary.success_rate == 1.0 and summary.invalid_rate == 0.0 and summary.errors == 0
    assert all(t.length == 2 and t.terminated and not t.truncated for t in trajs)
    assert all(t.steps[0].next_observation.startswith("<information>") for t in trajs)


def test_random_agent_runs(search_data: Path, index_dir: str) -> None:
    import opid_gym
    from opid_gym.agent import make_agent
    from opid_gym.evaluate import evaluate

    bench = opid_gym.BENCHMARKS.get("searchqa-bamboogle")
    summary, trajs = evaluate(bench, make_agent("random"), env_kwargs={"data_root": str(search_data),
                                                                       "index_dir": index_dir}, limit=4)
    assert summary.episodes == 4 and summary.errors == 0
    # with no admissible list the random agent answers "look": a wrong answer that ends the episode
    assert all(t.length == 1 and t.terminated and not t.won for t in trajs)
    assert all(normalize_answer(t.steps[0].action) == "answerlook" for t in trajs)


def test_check_env_passes(search_data: Path, index_dir: str) -> None:
    from opid_gym.checker import check_env

    results = check_env("searchqa-bamboogle", data_root=str(search_data), index_dir=index_dir)
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


@pytest.mark.parametrize("answer", ["r grandfather <a hr", "[O.S. 6 January] 1835", "George VI\n", "a ] b ["])
def test_gold_answers_with_brackets_and_tags_survive_the_round_trip(answer: str) -> None:
    # real gold answers (HotpotQA, Bamboogle) that a naive action format would break
    from opid_gym.parsing import format_action

    parsed = parse_search_answer(format_action(f"answer[{answer}]", "search_answer"))
    assert parsed.valid
    kind, text = parse_env_action(parsed.action)
    assert kind == "answer" and text == answer.strip()


def test_cli_eval_expert_and_bad_env_option(search_data: Path, index_dir: str, capsys: pytest.CaptureFixture) -> None:
    from opid_gym.cli import main

    root = ["--data-root", str(search_data)]
    assert main(["eval", "--agent", "expert", "--env", "searchqa", "--limit", "2", "--no-progress", "--json",
                 "--env-opt", f"index_dir={index_dir}", *root]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 14 and summary["success_rate"] == 1.0  # 2 per data set
    assert main(["eval", "--agent", "expert", "--env", "searchqa-nq", "--env-opt", "retriever=nope", *root]) == 2
    assert "unknown retriever 'nope'" in capsys.readouterr().err
