-- MAML, Omniglot 20-way 5-shot (Finn et al. 2017, Table 1: 98.9 +- 0.2 %).
-- Settings of the paper and of its code (cbfinn/maml); see ../shared/seed/NOTES.md.
return require("experiment").run{
  name             = "omniglot20w5s",
  task             = "omniglot",
  ways             = 20,          -- N
  shots            = 5,           -- K
  queries          = 5,           -- query images per class in training (the paper's code: = K)
  queries_test     = 5,           -- query images per class of a test task (the paper's code: = K)
  meta_batch       = 16,
  steps            = 5,           -- inner steps in meta-training
  steps_test       = 5,           -- inner steps at meta-test
  inner_lr         = 0.1,         -- on N x mean cross-entropy (= 2.0 on a plain mean)
  inner_loss_scale = "ways",
  meta_lr          = 1e-3,        -- Adam
  iterations       = 60000,
  first_order      = false,       -- exact second-order MAML
  rotation         = "task",      -- each class rotated by k * 90 degrees, drawn per task
  split            = "paper",     -- 1200 train (1100 + 100 validation) / 423 test characters
  val_classes      = 100,         -- validation classes carved from the training ones (the paper's code: 100)
  image            = 28,
  model            = "conv4",     -- 4 x [conv 3x3, stride 2, 64 filters -> BN -> ReLU], mean, linear
  bn_scale         = false,       -- BN: learned shift, no learned scale
  bn_adapt         = false,       -- BN shift meta-learned, not adapted in the inner loop
  bn_mode          = "batch",     -- batch statistics at meta-test too (transductive)
  init             = "paper",     -- Xavier-uniform conv, standard-normal linear
  test_tasks       = 600,
}
