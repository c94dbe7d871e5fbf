# evaluator: the evaluation stage. libevalcore.a holds the maths (linear probe,
# kNN, alignment/uniformity, encoder stages, PCA, t-SNE, purity, silhouette;
# class-balanced subsets are in dataset/split), the baseline cache's keys and
# files, the decoded images and their features (data.c), fine-tuning with few
# labels, and webtext (base64, HTML escaping), so that the unit tests link the
# same code; build/bin/evaluator adds attention maps, the class map, the
# report (text, plots, the web page) and the server loop (server.c).
evalcore_SRCS := evaluator/probe.c evaluator/knn.c evaluator/metrics.c evaluator/stages.c evaluator/cache.c \
                 evaluator/readout.c evaluator/embed.c evaluator/data.c evaluator/finetune.c evaluator/webtext.c
$(eval $(call add_lib,evalcore))

evaluator_SRCS := evaluator/main.c evaluator/server.c evaluator/options.c evaluator/evaluate.c \
                  evaluator/attention.c evaluator/report.c evaluator/html.c evaluator/figure.c \
                  evaluator/classmap.c
evaluator_LIBS := evalcore augment nn dataset transport proto console cli
$(eval $(call add_prog,evaluator))

test_eval_LIBS := evalcore augment nn dataset console cli
$(eval $(call add_test,test_eval))

test_finetune_LIBS := evalcore augment nn dataset console cli
$(eval $(call add_test,test_finetune))
