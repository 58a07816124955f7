"""Preference tuning: the KL-regularised objective of RLHF, offline (DPO) and on-policy (RLOO).

==============  ================================================================================================
``reference``   ``Reference``: the frozen pi_ref every method compares with (a frozen copy, the policy with its
                LoRA adapters off, or log-probabilities precomputed once)
``dpo``         ``dpo_loss`` (DPO, IPO, cDPO), ``sequence_logps``, ``DPOLitModule``
``rloo``        ``rloo_loss``, ``RLOOLitModule``: REINFORCE leave-one-out with a KL penalty
``rollouts``    seeded samples from a policy, their log-probabilities, a policy's place on the reward-KL plane
``rewards``     the known reward (bigram models of books, ``KnownReward``) and its spec file
``metrics``     ``StageMeans``: per-stage running means of the logged figures
==============  ================================================================================================
"""
