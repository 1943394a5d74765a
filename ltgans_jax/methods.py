"""Lifelong methods that share the LT-GANs state and steps, chosen by ``config.method``.

| method    | task 1  | task k >= 2    | roles swap | data of task k     | what it is                      |
|-----------|---------|----------------|------------|--------------------|---------------------------------|
| ltgans    | joint   | lakd           | yes        | task k             | the paper (LAKD, eqs. 2-3, 5-6) |
| no_lakd   | joint   | joint_replay   | no         | task k             | Fig. 4b baseline: the twins     |
|           |         |                |            |                    | trained jointly on each task,   |
|           |         |                |            |                    | no frozen Teacher               |
| finetune  | plain   | plain          | no         | task k             | forgetting lower bound          |
| joint     | plain   | plain          | no         | tasks 1..k at once | upper bound                     |

(``plain``: the Assistant and the Student learn the data alone; the Teacher is unused.) The
no-LAKD Student replays samples of the Teacher, which is trained on the new task like the
Assistant, so what it replays forgets too: the comparison isolates LAKD.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple

from ltgans_jax.errors import ConfigError


class Method(NamedTuple):
  phase: Callable[[int], str]  # task index -> name of the step in steps.make_train_steps
  swap_roles: bool             # begin_next_task swaps Teacher and Assistant
  cumulative_data: bool        # task k trains on the union of tasks 1..k


METHODS: Dict[str, Method] = {
    'ltgans': Method(lambda task: 'joint' if task == 0 else 'lakd', True, False),
    'no_lakd': Method(lambda task: 'joint' if task == 0 else 'joint_replay', False, False),
    'finetune': Method(lambda task: 'plain', False, False),
    'joint': Method(lambda task: 'plain', False, True),
}


def get(name: str) -> Method:
  if name not in METHODS:
    raise ConfigError(f'method={name!r} is not available; use one of {sorted(METHODS)}.')
  return METHODS[name]
