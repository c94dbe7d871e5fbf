# tests: programs the test scripts drive (build/tools). make_images writes the
# labeled image folders the integration tests train and load from, so that no
# test needs a dataset from outside the repository.
make_images_SRCS := tests/make_images.c
make_images_LIBS := cli
$(eval $(call add_tool,make_images))

# report_page rewrites a run's report page from its files (evaluator/html.c),
# for tests/it_report.sh.
report_page_SRCS := tests/report_page.c evaluator/html.c
report_page_LIBS := evalcore nn
$(eval $(call add_tool,report_page))
