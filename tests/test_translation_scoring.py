"""Translation scored as the papers scored it: cased BLEU (lowercase an option, visible in the sacreBLEU
signature), <unk> kept, detokenised hypotheses, one model tested on every bucket with each bucket's size."""
import pytest
import torch

from gapbench.tasks import text
from gapbench.tasks import translation
from gapbench.tasks.translation import Translation, detokenize

SENTS = ["El Señor dijo: «Ven aquí», y él vino.", "¿Dónde está Juan? No lo sé.", "Y Dios vio la luz, que era buena.",
         "Abraham engendró a Isaac; e Isaac engendró a Jacob.", "Paz a vosotros."]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    lines = []
    for k in range(600):
        tgt = SENTS[k % len(SENTS)]
        n = int(torch.randint(1, 13, (1,), generator=g))
        lines.append(" ".join(f"w{int(j)}" for j in torch.randint(30, (n,), generator=g)) + "\t" + tgt)
    path = tmp_path_factory.mktemp("c") / "toy.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def fake_outputs(task, hyp_of):
    return [{"hyps": [hyp_of(r) for r in b["refs"]], "refs": b["refs"], "nll_sum": 1.0, "count": 1, "bucket": b["bucket"]}
            for b in task.eval_batches("test")]


def test_defaults_are_the_published_scoring():
    assert Translation.__init__.__defaults__ is not None
    import inspect
    p = inspect.signature(Translation.__init__).parameters
    assert p["lowercase"].default is False and p["train_on"].default == "all" and p["detokenize"].default is True


def test_cased_bleu_detokenised_oracle_and_signature(corpus):
    task = Translation(12, 0, 8, path=corpus, buckets=[4, 8, 12], emb_size=8)
    tokens = lambda r: text.tokenize_13a(r)  # noqa: E731 (what the model's vocabulary holds)
    m = task.eval_metrics(fake_outputs(task, lambda r: detokenize(tokens(r), "es")))
    assert m["bleu"] == pytest.approx(100.0) and "case:mixed" in task.test_info["bleu_signature"]
    lower = task.eval_metrics(fake_outputs(task, lambda r: detokenize(tokens(r.lower()), "es")))
    assert lower["bleu"] < 90  # a lower-cased output is not a perfect one
    lc = Translation(12, 0, 8, path=corpus, buckets=[4, 8, 12], emb_size=8, lowercase=True)
    assert lc.eval_metrics(fake_outputs(lc, lambda r: r.lower()))["bleu"] == pytest.approx(100.0)
    assert "case:lc" in lc.test_info["bleu_signature"] and lc.eval_metrics(fake_outputs(lc, str))["lowercase"] == 1.0
    # Moses detokenisation rejoins punctuation as the reference writes it
    assert detokenize(tokens(SENTS[1]), "es") == SENTS[1]
    assert detokenize(["Paz", "a", "<unk>", "."], "es") == "Paz a <unk>."


def test_every_bucket_tested_with_its_size(corpus):
    task = Translation(8, 0, 8, path=corpus, buckets=[4, 8, 12], emb_size=8)
    m = task.eval_metrics(fake_outputs(task, str))
    sizes = {e: len(task.test_buckets[e]) for e in (4, 8, 12)}
    assert all(m[f"sentences_{e}"] == n for e, n in sizes.items()) and m["sentences"] == sizes[8]
    assert m["bleu"] == m["bleu_8"] and "bleu_all" in m
    assert task.test_info["small_buckets"] == ", ".join(f"{e} ({n} sentences)" for e, n in sizes.items())  # 60 pairs in all
    one = Translation(8, 0, 8, path=corpus, buckets=[4, 8, 12], emb_size=8, train_on="bucket")
    assert {b["bucket"] for b in one.eval_batches("test")} == {8}


def test_unk_is_kept_in_hypotheses(corpus, monkeypatch):
    task = Translation(8, 0, 8, path=corpus, buckets=[4, 8, 12], emb_size=8, tgt_vocab_size=6)
    v = task.tgt_vocab
    monkeypatch.setattr(translation, "greedy_decode", lambda m, src, *a: [[v.unk, v.stoi.get(".", v.unk), v.eos]] * src.shape[0])
    model = task.build_model(lambda n: torch.nn.LSTM(n, 4, batch_first=True), 4)
    model.encoder = model.decoder = None  # never called: decoding is stubbed, the teacher-forced loss is not needed
    monkeypatch.setattr(translation.Seq2Seq, "forward", lambda self, src, tgt: torch.zeros(*tgt.shape, len(v)))
    out = task.eval_step(model, task.eval_batches("test")[0])
    assert out["hyps"][0].startswith("<unk>")
