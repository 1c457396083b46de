-- Reptile (Nichol et al. 2018) on 5-way 1-shot Omniglot, with the reference code's settings.
-- The settings of the reference code's command for it (openai/supervised-reptile, README: "1-shot 5-way Omniglot"; 97.68% transductive,
-- 95.39% not, in the paper's Table 1). lua/algorithms/reptile.lua says what differs from that code.
return require("experiment").run{
  name             = "reptile_omniglot5w1s",
  algorithm        = "reptile",
  task             = "omniglot",
  ways             = 5,
  shots            = 1,           -- --shots 1 (evaluation tasks)
  train_shots      = 10,          -- --train-shots 10
  queries          = 1,           -- (training queries: only reported)
  queries_test     = 1,           -- one query per class, as the reference evaluation
  meta_batch       = 5,           -- --meta-batch 5
  iterations       = 100000,      -- --meta-iters 100000
  inner_lr         = 0.001,       -- --learning-rate 0.001 (Adam, beta1 = 0)
  steps            = 5,           -- --inner-iters 5
  inner_batch      = 10,          -- --inner-batch 10
  meta_step        = 1.0,         -- --meta-step 1
  meta_step_final  = 0.0,         -- --meta-step-final 0
  steps_test       = 50,          -- --eval-iters 50
  steps_test_max   = 50,
  eval_batch       = 5,           -- --eval-batch 5
  transductive     = false,       -- --transductive for the 97.68% row
  rotation         = "classes",   -- augmentation: rotated copies are classes of their own
  split            = "paper",
  val_classes      = 100,         -- validation classes carved from the training ones
  model            = "conv4",
  bn_scale         = true,        -- tf.layers.batch_normalization: scale and shift, both trained
  bn_adapt         = true,
  test_tasks       = 600,
}
