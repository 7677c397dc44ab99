"""Parameter counts of the MulT baseline (`build_mult_model`).

Usage:
    KERAS_BACKEND=jax python scripts/mult_parameter_count.py \
        --shapes 50,300 50,35 50,74 --widths 30 40

Prints one line per width: trainable parameters and the share of the six
cross-modal transformers, the three self-attention transformers and the
rest. Counts do not depend on the backend or on sequence lengths.
"""

import argparse
import json
import math

from mmfusion_keras.models import build_mult_model


def count(model, prefix_filter):
    return sum(
        math.prod(v.shape)
        for layer in model.layers
        if prefix_filter(layer.name)
        for v in layer.trainable_weights
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs=3, default=["50,300", "50,35", "50,74"])
    parser.add_argument("--widths", nargs="+", type=int, default=[30])
    parser.add_argument("--num-heads", type=int, default=5)
    parser.add_argument("--num-layers", type=int, default=5)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    for width in args.widths:
        model = build_mult_model(
            shapes, width=width, num_heads=args.num_heads, num_layers=args.num_layers
        )
        total = model.count_params()
        cross = count(model, lambda n: "_to_" in n)
        memory = count(model, lambda n: "_memory" in n)
        print(
            json.dumps(
                {
                    "input_shapes": shapes,
                    "width": width,
                    "num_heads": args.num_heads,
                    "num_layers": args.num_layers,
                    "total_parameters": total,
                    "cross_modal_transformers": cross,
                    "self_attention_transformers": memory,
                    "other": total - cross - memory,
                }
            )
        )


if __name__ == "__main__":
    main()
