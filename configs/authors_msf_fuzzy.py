"""``configs/msf_fuzzy.py`` with the optimisers and schedule of the authors' public code
(``config_base.authors_code_settings``: RMSProp 2e-4, one critic update per generator update,
20 epochs per task, the Student by Adam(2e-4, beta1 0.5) once per generator update, 100 latent
dimensions). The networks stay ours; that function lists every remaining difference."""

from ltgans_jax import config_base


def get_config():
  return config_base.authors_code_settings(config_base.get_paper_scale_config('msf_fuzzy'))
