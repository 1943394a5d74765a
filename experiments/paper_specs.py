"""The paper's artefacts as data: what ``experiments/reproduce.py`` plans, runs and reports.

One ``Artefact`` per table or figure of the paper (Ye & Bors, LT-GANs): the config of each size
(``paper``: the paper's data at our accelerator scale; ``cpu``: our CPU-scale stand-in on the
data this project has), the runs (method, seeds, overrides), the paper's numbers as printed, and
what the paper's text claims about them, as orderings (``Claim``: ``better`` has a lower value
than ``worse``). Three sources are kept apart here:

* what the paper states: ``paper_rows`` (copied from its tables) and ``claims`` (its sentences,
  quoted in ``Claim.quote``);
* what the authors' code does: nothing here depends on it (see ``ltgans_jax/methods/`` for where
  we follow or leave it);
* what we chose: the stand-in sequences, the sizes, the seeds, the baselines (no LAKD,
  fine-tuning, joint), which are this project's and carry no claim.

The paper's numbers are NLOG values on 32x32x3 images after its own (unstated) number of
iterations; ours are on the stand-in settings, so they are printed side by side but only the
orderings are compared.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

# The paper's three methods and this project's three baselines, in table order.
PAPER_METHODS = ('ltgans', 'curl', 'lgm')
BASELINES = ('no_lakd', 'finetune', 'joint')
METHOD_TITLES = {
    'ltgans': 'LT-GANs', 'curl': 'CURL', 'lgm': 'LGM', 'no_lakd': 'no LAKD (twins joint)',
    'finetune': 'fine-tuning', 'joint': 'joint (all data)',
}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One size of an artefact: the config file, its task names (for the plan and the report)
  and the dataset folders it reads under --data_dir (empty: bundled data)."""
  config: str
  tasks: Tuple[str, ...]
  folders: Tuple[str, ...] = ()
  note: str = ''  # how this setting differs from the paper's, in one sentence


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One line of an artefact: a method (``config.method``), its seeds, and overrides."""
  name: str
  method: str
  seeds: int
  overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
  title: str = ''


@dataclasses.dataclass(frozen=True)
class Claim:
  """'``better`` has a lower ``metric`` than ``worse``' on ``row`` ('average': the mean over
  tasks, taken per seed; or a task index), as the paper's ``quote`` says."""
  metric: str
  better: str  # a RunSpec name
  worse: str
  row: object = 'average'
  quote: str = ''


@dataclasses.dataclass(frozen=True)
class Artefact:
  name: str
  title: str
  settings: Mapping[str, Setting]  # size -> Setting; a size without one is not runnable
  runs: Tuple[RunSpec, ...]
  metric: str = 'nll_paper'  # what the table reports (``ltgans_jax.eval.task_eval``)
  paper_columns: Tuple[str, ...] = ()  # RunSpec names of the paper's columns
  paper_rows: Mapping[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
  claims: Tuple[Claim, ...] = ()
  # The sampled networks' grids after the last task: the GAN methods' Assistant, every
  # method's Student (LGM's VAE), CURL's mixture (one row per component).
  pictures: Tuple[str, ...] = ('samples/task{last}_assistant_*samples.png',
                               'samples/task{last}_student_samples.png',
                               'samples/task{last}_mixture_samples_*.png')
  extra_metrics: Tuple[str, ...] = ()  # also tabulated (e.g. Fig. 4b's 'mse')
  not_runnable: str = ''  # why the paper's setting cannot run on this project's data
  paper_text: str = ''  # what the paper says the artefact shows
  # size -> the artefact whose runs of the same names make this one's pictures at that size
  # (a size not named: its own runs). Such a picture-only artefact trains nothing of its own
  # there: its runs are that artefact's (same workdirs, same per-seed files), and its
  # ``pictures`` are copied from them.
  drawn_from: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def runs_for(self, seeds: Optional[int]) -> Tuple[RunSpec, ...]:
    """The runs with ``seeds`` capping each run's seeds (None: the spec's)."""
    if seeds is None:
      return self.runs
    return tuple(dataclasses.replace(r, seeds=min(r.seeds, seeds)) for r in self.runs)


def _methods(paper_seeds: int, baseline_seeds: int, methods=PAPER_METHODS + BASELINES,
             overrides: Optional[Dict[str, object]] = None) -> Tuple[RunSpec, ...]:
  return tuple(RunSpec(m, m, paper_seeds if m in PAPER_METHODS else baseline_seeds,
                       dict(overrides or {}), METHOD_TITLES[m]) for m in methods)


def _better_than(metric: str, better: str, worse: Sequence[str], rows: Sequence[object],
                 quote: str) -> Tuple[Claim, ...]:
  return tuple(Claim(metric, better, w, row, quote) for row in rows for w in worse)


GREY = ('mnist', 'fashion_mnist')

TABLE1 = Artefact(
    name='table1',
    title='Table 1: Student NLL (NLOG) after MNIST -> SVHN -> Fashion -> Omniglot',
    settings={
        'paper': Setting('configs/msfo.py', ('MNIST', 'SVHN', 'Fashion', 'Omniglot'),
                         ('mnist', 'svhn', 'fashion_mnist', 'omniglot')),
        'cpu': Setting('configs/msfo_offline_cpu.py',
                       ('MNIST', 'Fashion', 'inverted MNIST', 'inverted Fashion'), GREY,
                       'Offline stand-in (ours): MNIST -> Fashion -> inverted MNIST -> inverted '
                       'Fashion at 28x28x1, because SVHN and Omniglot are not on this machine.'),
    },
    runs=_methods(3, 1),
    paper_columns=PAPER_METHODS,
    paper_rows={
        'MNIST': (878.92, 887.40, 900.18),
        'SVHN': (219.15, 261.08, 262.20),
        'Fashion': (365.62, 639.19, 642.20),
        'Omniglot': (514.87, 695.68, 700.84),
        'Average': (494.64, 620.83, 626.35),
    },
    claims=_better_than('nll_paper', 'ltgans', ('curl', 'lgm'), ('average', 0, 1, 2, 3),
                        '"LT-GANs performs better in all tasks, while VAE based lifelong '
                        'methods, such as CURL and LGM tend to forget previously learnt tasks."'),
    paper_text='NLOG (reconstruction error plus KL) of the Student on each task after the '
               'whole sequence, 32x32x3.')

TABLE2 = Artefact(
    name='table2',
    title='Table 2: FID after CIFAR10 -> CIFAR100 -> Sub1-ImageNet -> Sub2-ImageNet',
    settings={'paper': Setting('configs/cifar_imagenet.py',
                               ('CIFAR10', 'CIFAR100', 'Sub1-ImageNet', 'Sub2-ImageNet'),
                               ('cifar10', 'cifar100', 'imagenet'),
                               'Sub1/Sub2 are Imagenette and Imagewoof (ours: the paper does '
                               'not list its classes); FID with this project\'s feature '
                               'network unless --set eval.inception_weights=FILE.')},
    runs=_methods(3, 1, ('ltgans', 'curl') + BASELINES),
    metric='fid_own',
    paper_columns=('ltgans', 'curl'),
    paper_rows={'First task': (62.85, 155.59), 'Second task': (59.27, 166.47),
                'Third task': (60.35, 169.28)},
    claims=_better_than('fid_own', 'ltgans', ('curl',), ('average',),
                        'Table 2 (Inception FID, lower is better): LT-GANs below CURL on every '
                        'row.'),
    not_runnable='needs CIFAR10, CIFAR100 and ImageNet class folders (cifar10/, cifar100/, '
                 'imagenet/<wnid>/ under --data_dir), which this machine does not have.',
    paper_text='Inception FID of the generator "after each task switch".')

TABLE3 = Artefact(
    name='table3',
    title='Table 3: Student NLL (NLOG) with fuzzy task boundaries, MNIST-c -> SVHN-c -> '
          'Fashion-c',
    settings={
        'paper': Setting('configs/msf_fuzzy.py', ('MNIST-c', 'SVHN-c', 'Fashion-c'),
                         ('mnist', 'svhn', 'fashion_mnist')),
        'cpu': Setting('configs/mnist_fashion_fuzzy_cpu.py', ('MNIST-c', 'Fashion-c'), GREY,
                       'Offline stand-in (ours): MNIST-c -> Fashion-c at 28x28x1 (classes 8 '
                       'exchanged, our reading of "one of the classes"), because SVHN is not '
                       'on this machine.'),
    },
    runs=_methods(3, 1),
    paper_columns=PAPER_METHODS,
    paper_rows={
        'MNIST-c': (139.98, 437.45, 1365.41),
        'SVHN-c': (141.57, 209.70, 206.44),
        'Fashion-c': (51.68, 54.72, 145.78),
        'Average': (111.08, 233.96, 556.13),
    },
    claims=_better_than('nll_paper', 'ltgans', ('curl', 'lgm'), ('average',),
                        '"the proposed Teacher-Student framework still achieves the best '
                        'results in terms of NLOG image reconstruction."'),
    paper_text='NLOG of the Student on each task after the whole fuzzy sequence.')

FIG4A = Artefact(
    name='fig4a',
    title='Fig. 4a: Student NLL (NLOG) on MNIST split into 10 class tasks',
    settings={
        'paper': Setting('configs/split_mnist.py', tuple(f'digit {d}' for d in range(10)),
                         ('mnist',)),
        'cpu': Setting('configs/split_mnist_cpu.py', tuple(f'digit {d}' for d in range(10)),
                       ('mnist',), 'MNIST at 28x28x1 (ours), 1000 steps per task.'),
    },
    # The paper's two methods, LGM (the third lifelong VAE of Tables 1 and 3) and fine-tuning
    # (forgetting with no replay at all, the floor), each with 3 seeds (ours).
    runs=_methods(3, 3, ('ltgans', 'curl', 'lgm', 'finetune')),
    paper_columns=('ltgans', 'curl'),
    claims=_better_than('nll_paper', 'ltgans', ('curl',), ('average',),
                        '"From this bar-plot it can be observed that the proposed framework '
                        'outperforms CURL."'),
    paper_text='A bar plot of the NLOG "on all testing samples" after 10 class tasks of one '
               'database (the paper prints no numbers).')

FIG4B = Artefact(
    name='fig4b',
    title='Fig. 4b: LAKD against the jointly trained twins, beta 1 and 4, MNIST -> Fashion',
    settings={
        'paper': Setting('configs/mnist_fashion.py', ('MNIST', 'Fashion'), GREY,
                         'MNIST -> Fashion is our choice: the paper says "NLOG and MSE on '
                         'MNIST" without naming the sequence.'),
        'cpu': Setting('configs/mnist_fashion_cpu.py', ('MNIST', 'Fashion'), GREY,
                       'MNIST -> Fashion at 28x28x1 (ours; the paper does not name the '
                       'sequence).'),
    },
    runs=tuple(RunSpec(f'{m}_beta{b}', m, 3, {'vae.beta': float(b)},
                       f'{METHOD_TITLES[m]}, beta {b}')
               for b in (1, 4) for m in ('ltgans', 'no_lakd')),
    extra_metrics=('mse',),
    claims=tuple(Claim(metric, f'ltgans_beta{b}', f'no_lakd_beta{b}', 'average',
                       '"LAKD loss function plays an important role in overcoming forgetting, '
                       'according to Fig. 4-b, where the baseline is considered when the '
                       'Teacher and Assistant are trained jointly in each task."')
                 for b in (1, 4) for metric in ('nll_paper', 'mse')),
    paper_text='NLOG and MSE against beta (eq. 6), with and without LAKD (the paper prints no '
               'numbers). MSE: the paper does not define it; ours is the per-pixel squared '
               'error of the Student\'s mean reconstruction, pixels in [0, 1].')

FIGS2_3 = Artefact(
    name='figs2_3',
    title='Figs. 2-3: the Student\'s latent space (interpolations, traversals)',
    settings={
        'paper': Setting('configs/celeba_chairs.py', ('CelebA', '3D Chairs'),
                         ('celeba', 'chairs')),
        'cpu': Setting('configs/mnist_fashion_cpu.py', ('MNIST', 'Fashion'), GREY,
                       'Offline stand-in (ours): MNIST -> Fashion instead of CelebA -> CACD / '
                       '3D Chairs, which are not on this machine; pictures only, drawn from '
                       'seed 0 of Fig. 4b\'s LT-GANs runs (beta 1 and 4).'),
    },
    # At the cpu size, Fig. 4b's LT-GANs runs at beta 1 and 4 are the Students these pictures
    # need (seed 0 of each), not runs of their own.
    runs=tuple(dataclasses.replace(r, seeds=1, title=t) for r, t in zip(
        (r for r in FIG4B.runs if r.method == 'ltgans'),
        ('Fig. 2 (ELBO Student, beta 1)', 'Fig. 3 (beta-VAE Student, beta 4)'))),
    drawn_from={'cpu': 'fig4b'},
    pictures=('figures/final_interpolation_*.png', 'figures/final_traversal_*.png'),
    not_runnable='the paper\'s figures need CelebA, CACD and 3D Chairs (celeba/, cacd/, '
                 'chairs/ under --data_dir); the cpu size draws the same pictures on MNIST -> '
                 'Fashion, to be judged by eye.',
    paper_text='Pictures only: interpolations between encoded images (Fig. 2) and one latent '
               'variable swept (Fig. 3).')

ARTEFACTS: Dict[str, Artefact] = {a.name: a for a in (TABLE1, TABLE2, TABLE3, FIG4A, FIG4B,
                                                      FIGS2_3)}

# Result folders of the six scripts this driver replaced, with --size=small (widths 16,
# batch 64): kept for their history, not read by the report.
SUPERSEDED = ('table1_msfo_offline', 'table3_fuzzy_offline', 'fig4a_split_mnist',
              'fig4b_ablation', 'figs2_3_latent_offline')
# Their --size=cpu runs (single seeds, or 500 steps): the last evidence before this driver.
EARLIER_CPU = ('table3_fuzzy_cpu', 'table3_fuzzy_cpu_3seeds', 'fig4b_ablation_cpu')
