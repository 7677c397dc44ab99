"""MFAS vs random search on noisy AV-Digits (the paper's Tables 1-2).

    KERAS_BACKEND=jax python scripts/mfas_experiment.py --output runs/mfas \
        --budget 60 --seed 0 --audio-snr-db -9 --image-snr-db -3
    # the paper's protocol (180 architectures per method), three search seeds
    KERAS_BACKEND=jax python scripts/mfas_experiment.py --output runs/mfas \
        --paper-protocol --seeds 0 1 2 --multitask-epochs 0

1. Trains (or loads from OUTPUT/unimodal) the unimodal LeNets: f on the
   log-mel spectrogram (5 conv layers, M = 5), g on the image (3 conv
   layers, N = 3), and caches their pooled conv features per split.
2. Table 2 baselines: f alone, g alone, two-stream late fusion (mean of
   the softmax outputs), concatenation of the last features.
3. Wall time of training a sampled fusion network on the cached features
   vs through the frozen extractors (same description, one epoch).
4. MFAS and random search with the same budget, the top 5 of each trained
   to completion (wider fusion layers); the best by validation accuracy is
   evaluated on the test split; optionally fine-tuned with the multitask
   loss (f and g unfrozen). With `--seeds`, once per search seed (the
   unimodal networks and the noise stay those of `--seed`); finished
   (method, seed) pairs found in OUTPUT/results.json are not run again.

Writes OUTPUT/results.json and prints Markdown tables.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mmfusion_keras.search import SearchSpace  # noqa: E402
from mmfusion_keras.search.av_digits_search import baselines  # noqa: E402
from mmfusion_keras.search.av_digits_search import measure_speedup  # noqa: E402
from mmfusion_keras.search.av_digits_search import prepare  # noqa: E402
from mmfusion_keras.search.av_digits_search import search_and_train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="runs/mfas")
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=5)
    parser.add_argument("--max-layers", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--audio-snr-db", type=float, default=-9.0)
    parser.add_argument("--image-snr-db", type=float, default=-3.0)
    parser.add_argument("--unimodal-epochs", type=int, default=30)
    parser.add_argument("--multitask-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--final-epochs", type=int, default=20)
    parser.add_argument("--final-patience", type=int, default=5)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="search seeds (default: --seed only)",
    )
    parser.add_argument(
        "--paper-protocol",
        action="store_true",
        help="E_search = 3, L = 4, K = 10, all of Gamma_1 in every "
        "iteration: 180 architectures per method (PAPER_PROTOCOL)",
    )
    parser.add_argument("--temperature-schedule", default="exponential")
    parser.add_argument("--speed-only", action="store_true", help="stop after step 3")
    parser.add_argument(
        "--searches-only",
        action="store_true",
        help="skip steps 2-3 (e.g. extra seeds run in parallel in another OUTPUT)",
    )
    parser.add_argument(
        "--per-model-heads",
        action="store_true",
        help="build and compile a new head per sampled architecture "
        "(the behaviour before the one compiled head)",
    )
    parser.add_argument(
        "--run-eagerly",
        action="store_true",
        help="do not compile the fusion heads' train step",
    )
    args = parser.parse_args()

    protocol = {}
    if args.paper_protocol:
        from mmfusion_keras.search.fusion_architecture_search import PAPER_PROTOCOL

        args.budget = PAPER_PROTOCOL["budget"]
        args.num_samples = PAPER_PROTOCOL["num_samples"]
        args.epochs = PAPER_PROTOCOL["epochs"]
        protocol = {
            "search_iterations": PAPER_PROTOCOL["search_iterations"],
            "level_one": PAPER_PROTOCOL["level_one"],
        }
    seeds = args.seeds if args.seeds is not None else [args.seed]

    start = time.perf_counter()
    path = os.path.join(args.output, "results.json")
    results = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    results.update({"args": vars(args), "backend": keras.config.backend()})

    def save():
        os.makedirs(args.output, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)

    data = prepare(
        os.path.join(args.output, "unimodal"),
        args.audio_snr_db,
        args.image_snr_db,
        seed=args.seed,
        unimodal_epochs=args.unimodal_epochs,
        verbose=True,
    )
    results["prepare_seconds"] = data["seconds"]
    final = {"epochs": args.final_epochs, "batch_size": args.batch_size}
    if "baselines" not in results and not (args.speed_only or args.searches_only):
        results["baselines"] = baselines(
            data, seed=args.seed, patience=args.final_patience, **final
        )
        save()
    if "baselines" in results:
        print("baselines", json.dumps(results["baselines"]), flush=True)

    space = SearchSpace(5, 3, ("relu", "sigmoid"), args.max_layers)
    if args.searches_only:
        pass
    elif "speed" not in results or args.speed_only:
        results["speed"] = measure_speedup(
            data,
            [[(5, 3, 1)], [(1, 1, 1), (4, 2, 2), (5, 3, 1)], [(2, 3, 2), (5, 1, 1)]],
            space,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            run_eagerly=args.run_eagerly,
        )
        save()
    if "speed" in results:
        print("speed", json.dumps(results["speed"]), flush=True)
    if args.speed_only:
        return

    runs = results.setdefault("runs", {})
    for seed in seeds:
        for method in ("mfas", "random"):
            key = f"{method}_seed{seed}"
            if key in runs:
                continue
            runs[key] = search_and_train(
                data,
                os.path.join(args.output, f"seed{seed}"),
                method=method,
                budget=args.budget,
                seed=seed,
                num_samples=args.num_samples,
                max_layers=args.max_layers,
                epochs=args.epochs,
                learning_rate=args.learning_rate,
                multitask_epochs=args.multitask_epochs if method == "mfas" else 0,
                batch_size=args.batch_size,
                final_epochs=args.final_epochs,
                final_patience=args.final_patience,
                run_eagerly=args.run_eagerly,
                verbose=True,
                temperature_schedule=args.temperature_schedule,
                one_compiled_head=not args.per_model_heads,
                **(protocol if method == "mfas" else {}),
            )
            save()
    results["wall_seconds"] = time.perf_counter() - start
    save()

    print("\n| method | seed | top-5 (final training) | val acc | search val acc |")
    print("|---|---|---|---|---|")
    summary = {}
    for method in ("random", "mfas"):
        for seed in seeds:
            r = runs[f"{method}_seed{seed}"]
            for row in r["top"]:
                d = ", ".join(f"({m},{n},{p})" for m, n, p in row["description"])
                print(
                    f"| {method} | {seed} | [{d}] | {row['val_accuracy']:.4f} | "
                    f"{row['search_val_accuracy']:.4f} |"
                )
            print(
                f"| {method} | {seed} | mean (std) | {r['top_val_mean']:.4f} "
                f"({r['top_val_std']:.4f}) | {r['top_search_val_mean']:.4f} "
                f"({r['top_search_val_std']:.4f}) |"
            )
        vals = [
            row["val_accuracy"]
            for s in seeds
            for row in runs[f"{method}_seed{s}"]["top"]
        ]
        means = [runs[f"{method}_seed{s}"]["top_val_mean"] for s in seeds]
        tests = [runs[f"{method}_seed{s}"]["best"]["test_accuracy"] for s in seeds]
        summary[method] = {
            "top5_val_all_mean": float(np.mean(vals)),
            "top5_val_all_std": float(np.std(vals)),
            "top5_val_mean_over_seeds": float(np.mean(means)),
            "top5_val_mean_std_over_seeds": float(np.std(means)),
            "best_test_mean": float(np.mean(tests)),
            "best_test_std": float(np.std(tests)),
            "search_seconds": [
                runs[f"{method}_seed{s}"]["search_seconds"] for s in seeds
            ],
        }
    results["summary"] = summary
    save()
    print(
        "\n| method | top-5 val, all seeds pooled: mean (std) | per-seed top-5 means: mean (std) | test of top 1: mean (std) |"
    )
    print("|---|---|---|---|")
    for method, m in summary.items():
        print(
            f"| {method} | {m['top5_val_all_mean']:.4f} ({m['top5_val_all_std']:.4f}) | "
            f"{m['top5_val_mean_over_seeds']:.4f} ({m['top5_val_mean_std_over_seeds']:.4f}) | "
            f"{m['best_test_mean']:.4f} ({m['best_test_std']:.4f}) |"
        )
    if "baselines" in results:
        b = results["baselines"]["test"]
        print("\n| method | test acc |\n|---|---|")
        print(f"| LeNet-5 spectrogram (f) | {b['audio_lenet5']:.4f} |")
        print(f"| LeNet-3 image (g) | {b['image_lenet3']:.4f} |")
        print(
            f"| two-stream late fusion (mean of softmax) | {b['late_fusion_mean']:.4f} |"
        )
        print(f"| concatenation of last features | {b['concat_last_features']:.4f} |")
    print(f"\nwall time {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
