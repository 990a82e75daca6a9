"""The named run profiles, ``quick`` and ``full`` (notebook 00).

A profile fixes every size and count a notebook uses; notebooks read them from the active
profile (``EFFCOURSE_PROFILE``, default ``full``: all of MNIST, the real course; ``quick``: the
same code on small subsets for CI). One notebook's settings live in ``NOTEBOOK_SETTINGS``
under its name, a quick and a full value per key, read with ``profile.section(name)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace

ENV_VAR = "EFFCOURSE_PROFILE"
DEFAULT = "full"


@dataclass(frozen=True)
class Profile:
    """One profile: data sizes, baseline epochs, timing repeats and per-notebook settings.
    Introduced in notebook 00."""

    name: str
    description: str
    train_size: int | None  # training images used (None: all 55,000 after the validation split)
    val_size: int  # held out from the end of the training set
    test_size: int | None  # test images used (None: all 10,000)
    batch_size: int
    baseline_epochs: dict = field(default_factory=dict)  # model name -> epochs
    latency_runs: int = 200  # timed single-sample inferences
    latency_warmup: int = 20
    latency_threads: int = 1
    repeats: int = 3  # repeats of a timing measurement
    representative_samples: int = 200  # calibration images for int8 conversion

    def section(self, notebook: str) -> SimpleNamespace:
        """This profile's settings for one notebook, e.g. ``profile.section("02_pruning")``."""
        if notebook not in NOTEBOOK_SETTINGS:
            raise KeyError(
                f"No settings for notebook {notebook!r}; known: {sorted(NOTEBOOK_SETTINGS)}. "
                "Add a block to effcourse/profile.py:NOTEBOOK_SETTINGS."
            )
        raw = NOTEBOOK_SETTINGS[notebook]
        return SimpleNamespace(**{key: values[self.name] for key, values in raw.items()})


PROFILES = {
    "quick": Profile(
        name="quick",
        description="small subsets and few epochs, for CI: about a minute per notebook",
        train_size=6000,
        val_size=1000,
        test_size=2000,
        batch_size=128,
        baseline_epochs={"lenet_300_100": 5, "lenet5": 3, "cnn": 3},
        latency_runs=50,
        latency_warmup=5,
        repeats=1,
        representative_samples=50,
    ),
    "full": Profile(
        name="full",
        description="all of MNIST and enough epochs to reach the published baselines",
        train_size=None,
        val_size=5000,
        test_size=None,
        batch_size=128,
        baseline_epochs={"lenet_300_100": 30, "lenet5": 20, "cnn": 12},
        latency_runs=500,
        latency_warmup=50,
        repeats=3,
        representative_samples=500,
    ),
}

# Per-notebook settings: {notebook: {key: {"quick": value, "full": value}}}.
# Each notebook owns its own block; keep both profiles side by side.
NOTEBOOK_SETTINGS: dict[str, dict[str, dict]] = {
    "00_setup_and_tour": {
        "mlp_widths": {"quick": (8, 32, 128), "full": (8, 16, 32, 64, 128, 300)},
        "mlp_epochs": {"quick": 3, "full": 5},
    },
    "01_sgd_loss_formulation": {
        "learning_rates": {"quick": (0.01, 0.1, 0.5, 2.0), "full": (0.001, 0.01, 0.1, 0.5, 2.0)},
        "lr_steps": {"quick": 90, "full": 600},
        "lr_batch_size": {"quick": 64, "full": 64},
        "transfer_steps": {"quick": 90, "full": 200},  # exercise 4: the same sweep on the small CNN
    },
    # Notebooks 02-08 add their own blocks below, one block per notebook.
    "08_automated_compression": {
        # accuracy budget: fraction below the baseline's validation accuracy (0.1 points in full)
        "max_drop": {"quick": 0.01, "full": 0.001},
        "seed": {"quick": 0, "full": 0},
        # section 1.1: the plain Optuna study of the learner's objective (one-shot pruning, no training)
        "demo_trials": {"quick": 12, "full": 20},
        "demo_startup_trials": {"quick": 5, "full": 5},  # random trials before TPE models the results
        "demo_max_drop": {"quick": 0.01, "full": 0.005},  # accuracy within this of the dense model's
        # size search (TPE, one objective: gzip bytes; notebook 04's hand-tuned plan tried first)
        "size_models": {"quick": ("lenet_300_100", "lenet5"), "full": ("lenet_300_100", "lenet5")},
        "size_trials": {
            "quick": {"lenet_300_100": 3, "lenet5": 2},
            # few trials, each continuing from 04's pruned model: what fits the notebook's time budget
            # beside the latency search (a LeNet-5 trial prunes up to 4 further epochs, ~40 s)
            "full": {"lenet_300_100": 5, "lenet5": 4},
        },
        "size_timeout_s": {
            "quick": {"lenet_300_100": 120, "lenet5": 120},
            "full": {
                "lenet_300_100": 100,
                "lenet5": 150,
            },  # trials only; 04's pruning (the start) comes first
        },
        "startup_trials": {"quick": 1, "full": 2},  # random trials before TPE models the results
        # a teacher whose soft targets every pruning of that model's study learns too (04's start and
        # each trial's further epochs; clustering and QAT stay on the labels): LeNet-5 lifted a pruned
        # LeNet-300-100 above its dense baseline in 02 (section 4.1); no model is more accurate than LeNet-5
        # quick: none (its models see a tenth of the images)
        "size_teacher": {"quick": {}, "full": {"lenet_300_100": "lenet5"}},
        "size_distill_alpha": {
            "quick": 0.9,
            "full": 0.9,
        },  # 02's teacher_alpha; temperature: distill_temperature
        # per layer: (low, high) fraction of the weights set to zero; low is 04's plan (the start
        # model holds it), so the search can only prune further, layer by layer
        "sparsity_ranges": {
            "quick": {
                "lenet_300_100": {"fc1": (0.8, 0.95), "fc2": (0.7, 0.9), "logits": (0.5, 0.7)},
                "lenet5": {
                    "conv1": (0.3, 0.5),
                    "conv2": (0.7, 0.8),
                    "fc1": (0.8, 0.95),
                    "logits": (0.5, 0.7),
                },
            },
            "full": {
                # logits at most 0.65: 0.4% of the weights, little to save, each weight moves a class score
                "lenet_300_100": {"fc1": (0.95, 0.975), "fc2": (0.85, 0.94), "logits": (0.5, 0.65)},
                "lenet5": {
                    "conv1": (0.5, 0.7),
                    "conv2": (0.9, 0.95),
                    "fc1": (0.95, 0.98),
                    "logits": (0.85, 0.92),
                },
            },
        },
        "cluster_choices": {
            "quick": (4, 8, 16),
            "full": (8, 16),
        },  # per clustered layer (04's layers); full: 4 clusters (2 bits) is below 04's plans
        # full lenet_300_100: PCQAT only; every layer is clustered, and PCQAT keeps k shared values as
        # k int8 codes where post-training int8 (per-channel scales) can give k per channel (notebook 04)
        "quantization": {
            "quick": {"lenet_300_100": ("pcqat_int8", "ptq_int8"), "lenet5": ("pcqat_int8", "ptq_int8")},
            "full": {"lenet_300_100": ("pcqat_int8",), "lenet5": ("pcqat_int8", "ptq_int8")},
        },
        "prune_epochs": {  # (low, high, step): further pruning epochs after 04's (0: at once, no fine-tuning)
            "quick": {"lenet_300_100": (0, 1, 1), "lenet5": (0, 1, 1)},
            # 0 must stay: trial 0 is 04's plan (no further epochs)
            "full": {"lenet_300_100": (0, 3, 1), "lenet5": (0, 4, 1)},
        },
        "prune_slack": {"quick": 0.05, "full": 0.005},  # pruner: stop below budget floor - slack
        "prune_warmup": {"quick": 0, "full": 0},  # reports before the pruner may stop a trial
        # latency search (NSGA-II: latency and accuracy; notebook 02's hand-chosen widths tried first)
        "latency_model": {"quick": "lenet5", "full": "lenet5"},
        "latency_trials": {"quick": 3, "full": 7},
        "latency_timeout_s": {"quick": 120, "full": 330},
        # channels kept per layer, (low, high, step): at most 02's 0.4 in the convolutions (their
        # multiply-adds are the latency), fc1 free to stay wider (cheap in time, good for accuracy)
        "keep_ranges": {
            "quick": {"conv1": (0.2, 0.6, 0.05), "conv2": (0.2, 0.6, 0.05), "fc1": (0.2, 0.6, 0.05)},
            "full": {"conv1": (0.2, 0.4, 0.05), "conv2": (0.25, 0.4, 0.05), "fc1": (0.3, 0.8, 0.1)},
        },
        "latency_epochs": {
            "quick": (1, 2, 1),
            "full": (4, 8, 2),
        },  # must hold 02's channel_epochs (trial 0)  # (low, high, step) fine-tuning epochs
        "latency_modes": {"quick": ("float32", "int8"), "full": ("float32", "dynamic", "int8")},
        # fine-tune on the labels only (02's recipe, trial 0) or also from the dense model's soft targets
        "latency_distill": {"quick": (False, True), "full": (False, True)},
        "distill_temperature": {"quick": 4.0, "full": 4.0},  # fine-tuning with a teacher (02, 08)
        "distill_alpha": {"quick": 0.5, "full": 0.5},
        "latency_budget": {"quick": 0.8, "full": 0.5},  # x the dense model's latency, measured here
        "latency_rounds": {"quick": 1, "full": 2},  # timing rounds per trial
        "final_rounds": {"quick": 3, "full": 7},  # interleaved rounds: winner, hand point, dense
    },
    "02_pruning": {
        "demo_sparsity": {"quick": 0.8, "full": 0.9},  # sections 1-2: one sparsity, two schedules
        "demo_epochs": {"quick": 1, "full": 3},
        # full: 0.8 left out (flat, like 0.5 and 0.9) to pay for notebook 08's longer LeNet-5 trials
        "sweep_sparsities": {"quick": (0.5, 0.9), "full": (0.5, 0.9, 0.95, 0.98)},
        "sweep_epochs": {
            "quick": {"lenet_300_100": 1, "lenet5": 1},
            "full": {"lenet_300_100": 1, "lenet5": 1},
        },
        "scan_sparsities": {
            "quick": (0.5, 0.8, 0.9, 0.95, 0.98, 0.99),
            "full": (0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99),
        },
        "scan_samples": {"quick": 500, "full": 2000},  # validation images per scan point
        "max_layer_sparsity": {"quick": 0.99, "full": 0.99},
        # Section 4: Han et al. 2015's per-layer rates (kept 8/9/26% and 66/12/8/19%, about 12x), the
        # reference that "han" scales to each compression compared
        "han_sparsity": {
            "quick": {
                "lenet_300_100": {"fc1": 0.92, "fc2": 0.91, "logits": 0.74},
                "lenet5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "logits": 0.81},
            },
            "full": {
                "lenet_300_100": {"fc1": 0.92, "fc2": 0.91, "logits": 0.74},
                "lenet5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "logits": 0.81},
            },
        },
        # compressions (x fewer non-zero weights, biases counted) at which the allocations are compared:
        # the paper's 12x, and (LeNet-300-100 only: a LeNet-5 run costs several of its runs) one where
        # the small layers' share matters
        "compare_ratios": {
            "quick": {"lenet_300_100": (12, 40), "lenet5": (12,)},
            "full": {"lenet_300_100": (12, 40), "lenet5": (12,)},
        },
        "allocations": {  # retrained with the iterative recipe, at every ratio, per model
            "quick": {"lenet_300_100": ("uniform", "scan", "global", "han"), "lenet5": ("uniform", "han")},
            "full": {"lenet_300_100": ("uniform", "scan", "global", "han"), "lenet5": ("uniform", "han")},
        },
        "stages": {"quick": (0.5, 1.0), "full": (0.5, 0.8, 1.0)},  # fractions of the final sparsities
        "stage_epochs": {  # per stage; the last stage retrains longest
            "quick": {"lenet_300_100": (1, 1), "lenet5": (1, 1)},
            "full": {"lenet_300_100": (2, 2, 6), "lenet5": (2, 2, 6)},
        },
        # section 4's retraining rate (AdamW, cosine-decayed per stage): the baselines' peak rate; the
        # decay within each stage plays the part of Han's lower fixed rate (3e-4 left LeNet-5 at 12x a
        # few test images above its dense error on an AMD EPYC; 1e-3 reached it)
        "iterative_learning_rate": {"quick": 1e-3, "full": 1e-3},
        # Section 4.1: section 4's 12x run of {model: (teacher, allocation)} repeated with the teacher's
        # soft targets (distillation, notebook 04) in the retraining; the allocation must be one that
        # section 4 runs at 12x (cfg.allocations). The dense model
        # itself as teacher is the obvious alternative; LeNet-5 is the stronger teacher for an MLP.
        "teacher_runs": {
            "quick": {"lenet_300_100": ("lenet5", "global")},
            "full": {"lenet_300_100": ("lenet5", "global")},
        },
        "teacher_temperature": {"quick": 4.0, "full": 4.0},
        "teacher_alpha": {"quick": 0.9, "full": 0.9},
        "allocation_margin": {"quick": 0.001, "full": 0.001},  # "beats uniform": by 0.1 points or more
        "learning_rate": {"quick": 1e-3, "full": 1e-3},
        "weight_decay": {"quick": 0.004, "full": 0.004},  # AdamW, sections 3-6
        "m_by_n_epochs": {"quick": 1, "full": 2},
        "channel_model": {"quick": "lenet5", "full": "lenet5"},
        "channel_keep": {
            "quick": {"conv1": 0.4, "conv2": 0.4, "fc1": 0.4},
            "full": {"conv1": 0.4, "conv2": 0.4, "fc1": 0.4},
        },
        "channel_epochs": {"quick": 2, "full": 4},
        "latency_rounds": {"quick": 3, "full": 7},
    },
    "03_quantization": {
        "models": {"quick": ("lenet_300_100", "cnn"), "full": ("lenet_300_100", "cnn")},  # dense-heavy, conv
        "qat_epochs": {"quick": 1, "full": 1},  # fine-tuning from the trained baseline
        "qat_learning_rate": {"quick": 1e-4, "full": 1e-4},
        "sqnr_samples": {"quick": 200, "full": 1000},  # test images for the per-layer error
        "latency_rounds": {"quick": 3, "full": 7},  # interleaved rounds of profile.latency_runs each
    },
    "04_clustering_distillation_deep_compression": {
        "finetune_size": {"quick": 1000, "full": 10000},  # training images for the short fine-tunings
        "init_clusters": {"quick": 4, "full": 4},  # centroid initialisations compared at this k
        "cluster_counts": {"quick": (4, 16), "full": (4, 8, 16, 32, 64)},  # 2 to 6 bits per weight
        "cluster_epochs": {"quick": 1, "full": 1},
        "qat_epochs": {"quick": 1, "full": 1},
        # Deep Compression: per-layer sparsity (Han et al. keep 8/9/26% and 66/12/8/19%), clusters
        "dc_sparsity": {
            "quick": {
                "lenet_300_100": {"fc1": 0.8, "fc2": 0.7, "logits": 0.5},
                "lenet5": {"conv1": 0.3, "conv2": 0.7, "fc1": 0.8, "logits": 0.5},
            },
            "full": {
                "lenet_300_100": {"fc1": 0.95, "fc2": 0.85, "logits": 0.5},
                "lenet5": {"conv1": 0.5, "conv2": 0.9, "fc1": 0.95, "logits": 0.85},
            },
        },
        "dc_clusters": {
            "quick": {
                "lenet_300_100": {"fc1": 8, "fc2": 16, "logits": 16},
                "lenet5": {"fc1": 8, "logits": 8},
            },
            "full": {"lenet_300_100": {"fc1": 8, "fc2": 16, "logits": 16}, "lenet5": {"fc1": 8, "logits": 8}},
        },  # conv kernels stay int8
        "dc_cluster_init": {"quick": "density", "full": "density"},
        "dc_cluster_epochs": {
            "quick": {"lenet_300_100": 0, "lenet5": 0},
            "full": {"lenet_300_100": 1, "lenet5": 0},
        },
        "dc_prune_epochs": {
            "quick": {"lenet_300_100": 1, "lenet5": 1},
            "full": {"lenet_300_100": 14, "lenet5": 4},
        },
        "dc_prune_learning_rate": {"quick": 3e-3, "full": 3e-3},
        "dc_weight_decay": {"quick": 0.02, "full": 0.02},  # AdamW while pruning
        "dc_qat_epochs": {"quick": 1, "full": 1},
        "teacher": {"quick": "lenet5", "full": "lenet5"},
        "student_filters": {"quick": (16, 32), "full": (16, 32)},
        "student_dense": {"quick": 64, "full": 64},
        "distill_learning_rate": {"quick": 3e-3, "full": 3e-3},
        "small_size": {"quick": 300, "full": 1100},  # the small transfer set: 2% of the training images
        "small_sweep_epochs": {"quick": 5, "full": 60},  # per (T, alpha) run of the sweep
        "small_epochs": {"quick": 10, "full": 200},  # the chosen (T, alpha) and the student alone
        "small_seeds": {"quick": 1, "full": 3},  # initialisations of that pair, errors averaged
        "temperatures": {"quick": (10.0,), "full": (2.0, 5.0, 10.0, 20.0)},
        "alphas": {"quick": (0.9,), "full": (0.5, 0.9)},
        # Hinton et al.'s experiment on all the images: an unregularised MLP student, alone and distilled
        "mlp_hidden": {"quick": (800, 800), "full": (800, 800)},  # the paper's student; 300-100 closed ~1/3
        "all_seeds": {"quick": 1, "full": 3},
        "all_temperature": {"quick": 20.0, "full": 20.0},
        "all_alpha": {"quick": 0.9, "full": 0.9},
        "distill_epochs": {"quick": 2, "full": 8},  # student alone / distilled on all the images
        "student_prune_epochs": {"quick": 1, "full": 2},
    },
    "05_mixed_precision": {
        "model": {"quick": "cnn", "full": "cnn"},
        "train_steps": {"quick": 30, "full": 500},  # per policy, same batches
        "chunk_steps": {"quick": 10, "full": 25},  # interleaved timing chunk
        # The side-by-side training is bounded: a probe times each policy's step first, and every
        # policy trains min(train_steps, what fits the budget) steps, never fewer than the minimum.
        # (On a CPU whose float16 backward convolution is generic code, mixed_float16 is ~70x slower.)
        "side_by_side_budget_s": {
            "quick": 20,
            "full": 60,
        },  # seconds for the three runs together (timing only; 90 gave 17 steps per policy here, 60 ~11)
        "side_by_side_min_steps": {"quick": 3, "full": 8},  # timing only: parity is 4.2's seeds
        "probe_rounds": {"quick": 1, "full": 3},  # timed steps per policy in the probe
        "grad_steps": {"quick": (0, 10, 30), "full": (0, 50, 300)},  # gradient snapshots
        "lso_demo_steps": {"quick": 8, "full": 8},
        "lso_batch": {"quick": 16, "full": 16},  # float16 steps: small batches keep them short on any CPU
        "lso_overflow_at": {"quick": (2, 3), "full": (2, 3)},
        "lso_growth_steps": {"quick": 3, "full": 3},
        "op_rounds": {"quick": 3, "full": 5},  # interleaved single-op timing
        "op_reps": {"quick": 1, "full": 2},  # a float16 backward convolution can take seconds
        "qat_steps": {"quick": 5, "full": 60},
        # Parity over seeds (Micikevicius et al.): a small MLP, every policy from the same weights on the
        # same batches per seed; the same number of steps for every policy (float16 steps are slow on some CPUs).
        "parity_model": {"quick": "lenet_300_100", "full": "lenet_300_100"},
        "parity_seeds": {"quick": (0, 1, 2), "full": (0, 1, 2)},
        "parity_steps": {"quick": 40, "full": 40},  # a mixed_float16 MLP step can take ~1 s on this CPU
        "parity_chunk": {"quick": 10, "full": 10},
    },
    "06_dynamic_networks": {
        "backbone": {"quick": "lenet5", "full": "lenet5"},  # BranchyNet style, from the trained baseline
        "joint_epochs": {"quick": 2, "full": 12},  # joint fine-tuning of backbone and exit heads
        "joint_learning_rate": {"quick": 1e-3, "full": 1e-3},
        # exit 1, exit 2, final: the first exit answers most inputs, so it pulls hardest (on an AMD
        # EPYC, (1, 0.5, 1) for 8 epochs left it at 98.65% test and 4.7x fewer mean MACs; (2, 0.5, 1)
        # for 12 epochs, 98.82% and 5.5x, with the final exit as accurate as before)
        "loss_weights": {"quick": (2.0, 0.5, 1.0), "full": (2.0, 0.5, 1.0)},
        # hidden units of the first exit's head: small, since every input runs it (a 128-unit head's
        # 370 KB of weights make stage 1 slow whenever it runs cold, after the full network)
        "exit1_hidden": {"quick": 32, "full": 32},
        "train_shift": {"quick": 0.08, "full": 0.08},  # random shifts (fraction of 28 px) in training
        # confidence thresholds swept: 0 (always exit), 1 - 10^-x for x evenly spaced up to 6, 1 (never)
        "thresholds": {
            "quick": (0.0,) + tuple(round(1 - 10 ** (-k / 4), 8) for k in range(1, 25)) + (1.0,),
            "full": (0.0,) + tuple(round(1 - 10 ** (-k / 16), 8) for k in range(4, 97)) + (1.0,),
        },
        "max_accuracy_drop": {"quick": 0.001, "full": 0.0005},  # the target's limit: 0.05 points (full)
        # choosing on validation: the drop plus this many standard errors (sqrt(harm + help) / N)
        # must stay within max_accuracy_drop (without it, a threshold at the limit on validation lands on
        # either side of it on test)
        "select_z": {"quick": 1.0, "full": 1.0},
        "latency_samples": {"quick": 300, "full": 10000},  # test images timed one at a time
        "latency_repeats": {"quick": 3, "full": 5},  # interleaved passes; median per sample
        "latency_block": {
            "quick": 50,
            "full": 50,
        },  # images per block: each model runs a block, then the other
        "cold_samples": {"quick": 300, "full": 2000},  # the same timed taking turns on every image (block=1)
        "timing_runs": {"quick": 1, "full": 3},  # separate timing runs; the worst is kept
        "static_epochs": {"quick": 2, "full": 10},  # the static small network, same recipe
        "gate_train_size": {"quick": 3000, "full": 20000},  # the skip-gate section
        "gate_epochs": {"quick": 1, "full": 3},
        "gate_target": {"quick": 0.3, "full": 0.3},  # share of inputs the gate budget aims at
        "gate_weight": {"quick": 1.0, "full": 1.0},  # weight of the budget term in the loss
        "hard_grid": {"quick": 20, "full": 40},  # hardest digits shown
    },
    "07_parallelism": {
        "logical_cpus": {"quick": 4, "full": 8},  # devices when there are no GPUs
        "replicas": {"quick": (1, 2, 4), "full": (1, 2, 4, 8)},  # scaling sweep
        "scaling_models": {"quick": ("lenet_300_100",), "full": ("lenet_300_100", "lenet5")},
        "global_batch": {"quick": 256, "full": 256},  # data parallel; divisible by every replica count
        "scaling_steps": {"quick": 5, "full": 20},  # steps per timed chunk
        "scaling_repeats": {"quick": 5, "full": 7},  # interleaved chunks per replica count
        "fit_train_size": {"quick": 6000, "full": 12800},  # images for the fit / custom-loop demos
        "fit_learning_rate": {"quick": 0.1, "full": 0.1},
        "mw_workers": {"quick": 2, "full": 3},
        "mw_steps": {"quick": 20, "full": 60},
        "mw_global_batch": {"quick": 64, "full": 96},  # divisible by the worker count
        "mw_timeout": {"quick": 240, "full": 600},  # seconds for the whole multi-worker job
        "mw_hang_timeout": {"quick": 3, "full": 5},  # the hang demo's timeout
        "pipe_stages": {"quick": (2, 4), "full": (2, 4, 8)},  # K
        "pipe_micro_batches": {"quick": (1, 2, 4, 8), "full": (1, 2, 4, 8, 16)},  # M
        "pipe_global_batch": {"quick": 512, "full": 1024},  # 64 rows per micro-batch at the largest M
        "pipe_repeats": {"quick": 3, "full": 5},  # timed steps per (K, M); task medians
        "gantt": {"quick": (4, 8), "full": (4, 8)},  # (K, M) drawn as a timeline
        "size_widths": {"quick": (64, 512, 1024), "full": (64, 256, 512, 1024)},  # balanced MLP widths
        "size_blocks": {"quick": 4, "full": 4},  # hidden blocks: 5 weighted layers, so K up to 4 splits
        "size_epochs": {"quick": 1, "full": 2},
        "memory_splits": {"quick": (2, 4), "full": (2, 4)},  # K-way splits measured per device
        "device_budget_mb": {"quick": 13, "full": 13},  # stated per-device budget: 512 needs K=2, 1024 K=4
    },
    "09_deploy_onnx": {
        "models": {"quick": ("lenet_300_100", "cnn"), "full": ("lenet_300_100", "cnn")},  # dense-heavy, conv
        "opset": {"quick": 17, "full": 17},  # the ONNX operator set exported (deploy.DEFAULT_OPSET)
        "agree_atol": {"quick": 1e-4, "full": 1e-4},  # largest logit difference allowed, float32 vs float32
        "finetune_size": {"quick": 1000, "full": 10000},  # training images for the rebuilt compressed models
        "sparsity": {"quick": 0.8, "full": 0.9},
        "prune_epochs": {"quick": 1, "full": 2},
        "clusters": {"quick": 16, "full": 16},
        "cluster_epochs": {"quick": 1, "full": 1},
        "qat_epochs": {"quick": 1, "full": 1},
        "qat_learning_rate": {"quick": 1e-4, "full": 1e-4},
        "latency_rounds": {"quick": 3, "full": 7},  # interleaved rounds of profile.latency_runs each
        "threads": {"quick": (1, 2), "full": (1, 2)},  # session options compared
        "options_rounds": {"quick": 2, "full": 3},  # interleaved rounds of the session-options sweep
        "levels": {"quick": ("disabled", "basic", "all"), "full": ("disabled", "basic", "extended", "all")},
    },
    "10_transformer_inference": {
        # the task: a + b with `digits` digits each; the answer written least significant digit first
        "digits": {"quick": 2, "full": 3},
        "width": {"quick": 64, "full": 128},  # the model's width (embedding size)
        "heads": {"quick": 4, "full": 4},
        "head_dim": {"quick": 16, "full": 32},
        "layers": {"quick": 2, "full": 2},
        "mlp_width": {"quick": 256, "full": 512},
        "seed": {"quick": 0, "full": 0},
        "train_steps": {"quick": 500, "full": 2400},  # one pass over fresh problems; full: 100% at 2,400
        "batch_size": {"quick": 128, "full": 128},
        "learning_rate": {"quick": 3e-3, "full": 1e-3},  # Adam, warm-up then cosine decay
        "val_size": {"quick": 500, "full": 2000},
        "test_size": {"quick": 500, "full": 4000},
        "calibration_size": {"quick": 128, "full": 256},  # training problems for GPTQ and SmoothQuant
        "kv_batch": {"quick": 256, "full": 256},  # sequences decoded together when timing each position
        "kv_rounds": {"quick": 3, "full": 7},  # interleaved rounds per position (median)
        "decode_runs": {"quick": 3, "full": 10},  # single-problem greedy decodes per round
        "bits": {"quick": (8, 4, 3), "full": (8, 4, 3)},  # round-to-nearest sweep
        "groups": {"quick": (None, 32), "full": (None, 64, 32)},  # None: one scale per output channel
        "gptq_bits": {"quick": (4, 3), "full": (4, 3)},
        "gptq_group": {"quick": 32, "full": 32},
        "max_drop": {"quick": 0.01, "full": 0.01},  # accuracy floor: 1 point of exact match below float32
        "byte_budget": {"quick": 0.3, "full": 0.3},  # exercise 2: share of the float32 weights' bytes
        "outlier_factor": {"quick": 30.0, "full": 30.0},  # the made outlier channel's growth
        "outlier_ratio": {"quick": 20.0, "full": 20.0},  # an outlier channel: its max over 20x the median
        "smooth_alpha": {"quick": 0.5, "full": 0.5},  # SmoothQuant's migration strength
        "latency_rounds": {"quick": 3, "full": 7},  # LiteRT and ONNX Runtime: rounds of latency_runs
        "opset": {"quick": 17, "full": 17},  # the ONNX operator set tf2onnx writes (as notebook 09)
        "onnx_atol": {"quick": 1e-3, "full": 1e-3},  # largest logit gap, ONNX float32 against Keras
    },
}


#: Measured run time of each notebook in minutes, per profile: the one source for the notebooks'
#: "Run time" lines, the README's syllabus and ``make course``'s estimate (a test checks they agree).
#: Full: a fresh clone with an empty cache on a quiet 2-core AMD EPYC (no GPU, nothing else running),
#: 2026-12-06: 00-01 by ``make course``, 02-10 by ``python -m effcourse.course --only ...`` in the same
#: clone right after (02 and 06 measured again later there, with the same cache); 98.0 minutes in all
#: (01 trains the three baselines). Notebooks 00-09
#: took 61.5 minutes on a 2-core Intel Xeon (Sapphire Rapids). Quick: each notebook alone with nbclient
#: on that Intel machine.
RUN_MINUTES = {
    "00_setup_and_tour": {"quick": 0.4, "full": 1.6},
    "01_sgd_loss_formulation": {"quick": 0.6, "full": 13.8},
    "02_pruning": {"quick": 2.7, "full": 19.6},
    "03_quantization": {"quick": 0.8, "full": 2.4},
    "04_clustering_distillation_deep_compression": {"quick": 1.8, "full": 21.2},
    "05_mixed_precision": {"quick": 4.1, "full": 3.0},
    "06_dynamic_networks": {"quick": 0.9, "full": 8.2},
    "07_parallelism": {"quick": 1.4, "full": 7.1},
    "08_automated_compression": {"quick": 1.4, "full": 15.3},
    "09_deploy_onnx": {"quick": 0.7, "full": 1.4},
    # 10's quick time: under nbval on the shared AMD EPYC machine (77 s wall)
    "10_transformer_inference": {"quick": 1.3, "full": 4.4},
}


def run_time_line(notebook: str) -> str:
    """The "Run time" sentence every notebook's first cell carries (checked by a test).
    Introduced in notebook 00."""
    m = RUN_MINUTES[notebook]
    return (
        f"**Run time:** about {m['full']:g} min in the full profile, {m['quick']:g} min in the quick profile"
    )


def get(name: str | None = None) -> Profile:
    """The profile called ``name``; an unknown name is an error listing the valid ones.
    Introduced in notebook 01."""
    key = (name or DEFAULT).strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown effcourse profile {name!r}. Valid profiles: {', '.join(sorted(PROFILES))}. "
            f"Set {ENV_VAR}=quick or {ENV_VAR}=full."
        )
    return PROFILES[key]


def active() -> Profile:
    """The profile named by ``$EFFCOURSE_PROFILE`` (default ``full``).
    Introduced in notebook 07."""
    return get(os.environ.get(ENV_VAR) or DEFAULT)
