-- MAML++ (Antoniou et al. 2019) on 5-way 1-shot Omniglot, its paper's 99.47%, with its configs.
-- The settings of its Omniglot configs (HowToTrainYourMAMLPytorch, experiment_config/omniglot_maml++_*.json): meta-batch 16, 5 inner
-- steps in training and test, max pooling, inner step sizes learned from 0.1, multi-step loss for
-- the first 20 of 250 epochs of 500 iterations, meta learning rate 1e-3 annealed to 1e-5.
-- Each technique is a switch (lua/algorithms/mamlpp.lua), e.g. multi_step_loss=false.
return require("experiment").run{
  name             = "mamlpp_omniglot5w1s",
  algorithm        = "mamlpp",
  task             = "omniglot",
  ways             = 5,
  shots            = 1,
  queries          = 1,           -- num_target_samples 1
  queries_test     = 1,
  meta_batch       = 16,          -- batch_size 16
  steps            = 5,           -- number_of_training_steps_per_iter
  steps_test       = 5,           -- number_of_evaluation_steps_per_iter
  inner_lr         = 0.1,         -- init_inner_loop_learning_rate
  inner_loss_scale = 1,
  meta_lr          = 1e-3,        -- meta_learning_rate, annealed to min_meta_lr
  min_meta_lr      = 1e-5,        -- min_learning_rate
  iterations       = 125000,      -- total_epochs 250 x total_iter_per_epoch 500
  epoch_iterations = 500,
  msl_epochs       = 20,          -- multi_step_loss_num_epochs
  second_order_epoch = -1,        -- first_order_to_second_order_epoch: second order throughout
  rotation         = "task",
  split            = "paper",
  val_classes      = 100,
  model            = "conv4",
  pool             = "max",       -- max_pooling: conv 3x3 stride 1 -> BN -> ReLU -> max-pool 2
  bn_scale         = true,        -- learnable gamma and beta, per step
  bn_adapt         = false,       -- enable_inner_loop_optimizable_bn_params: false
  bn_eps           = 1e-5,
  test_tasks       = 600,
}
