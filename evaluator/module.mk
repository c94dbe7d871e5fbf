# evaluator: the evaluation stage. libevalcore.a holds the maths (linear probe,
# kNN, alignment/uniformity, encoder stages, PCA, t-SNE, purity, silhouette;
# class-balanced subsets are in dataset/split), the baseline cache's keys and
# files, the decoded images and their features (data.c) and fine-tuning with
# few labels, so that the unit tests link the same code; build/bin/evaluator
# adds attention maps, the class map, the report and the server loop.
evalcore_SRCS := evaluator/probe.c evaluator/knn.c evaluator/metrics.c evaluator/stages.c evaluator/cache.c \
                 evaluator/readout.c evaluator/embed.c evaluator/data.c evaluator/finetune.c
$(eval $(call add_lib,evalcore))

evaluator_SRCS := evaluator/main.c evaluator/options.c evaluator/evaluate.c \
                  evaluator/attention.c evaluator/report.c evaluator/figure.c evaluator/classmap.c
evaluator_LIBS := evalcore augment nn dataset transport proto console
$(eval $(call add_prog,evaluator))

test_eval_LIBS := evalcore nn dataset
$(eval $(call add_test,test_eval))

test_finetune_LIBS := evalcore augment nn dataset console
$(eval $(call add_test,test_finetune))
