"""Developer tools outside the package: benchmarks (`make bench`), the README screenshot
(`make screenshot`) and the output-hash proof of a refactor (`output_hashes.sh`)."""
