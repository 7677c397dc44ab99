"""MFAS vs random search on noisy AV-Digits (the paper's Tables 1-2).

    KERAS_BACKEND=jax python scripts/mfas_experiment.py --output runs/mfas \
        --budget 60 --seed 0 --audio-snr-db -9 --image-snr-db -3

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
   loss (f and g unfrozen).

Writes OUTPUT/results.json and prints Markdown tables.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

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
        "--run-eagerly",
        action="store_true",
        help="do not compile the fusion heads' train step",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    results = {"args": vars(args), "backend": keras.config.backend()}
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
    results["baselines"] = baselines(
        data, seed=args.seed, patience=args.final_patience, **final
    )
    print("baselines", json.dumps(results["baselines"]), flush=True)

    space = SearchSpace(5, 3, ("relu", "sigmoid"), args.max_layers)
    results["speed"] = measure_speedup(
        data,
        [[(5, 3, 1)], [(1, 1, 1), (4, 2, 2), (5, 3, 1)]],
        space,
        epochs=args.epochs,
        batch_size=args.batch_size,
        run_eagerly=args.run_eagerly,
    )
    print("speed", json.dumps(results["speed"]), flush=True)

    for method in ("mfas", "random"):
        results[method] = search_and_train(
            data,
            args.output,
            method=method,
            budget=args.budget,
            seed=args.seed,
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
        )
        with open(os.path.join(args.output, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    results["wall_seconds"] = time.perf_counter() - start
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    print("\n| method | top-5 (final training) | val acc | search val acc |")
    print("|---|---|---|---|")
    for method in ("random", "mfas"):
        r = results[method]
        for row in r["top"]:
            d = ", ".join(f"({m},{n},{p})" for m, n, p in row["description"])
            print(
                f"| {method} | [{d}] | {row['val_accuracy']:.4f} | "
                f"{row['search_val_accuracy']:.4f} |"
            )
        print(
            f"| {method} | mean (std) | {r['top_val_mean']:.4f} ({r['top_val_std']:.4f}) "
            f"| {r['top_search_val_mean']:.4f} ({r['top_search_val_std']:.4f}) |"
        )
    b = results["baselines"]["test"]
    print("\n| method | test acc |\n|---|---|")
    print(f"| LeNet-5 spectrogram (f) | {b['audio_lenet5']:.4f} |")
    print(f"| LeNet-3 image (g) | {b['image_lenet3']:.4f} |")
    print(f"| two-stream late fusion (mean of softmax) | {b['late_fusion_mean']:.4f} |")
    print(f"| concatenation of last features | {b['concat_last_features']:.4f} |")
    for method in ("random", "mfas"):
        print(f"| {method} top 1 | {results[method]['best']['test_accuracy']:.4f} |")
    if "multitask" in results["mfas"]:
        print(
            f"| mfas top 1 + multitask fine-tuning | "
            f"{results['mfas']['multitask']['test_accuracy']:.4f} |"
        )
    print(f"\nwall time {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
