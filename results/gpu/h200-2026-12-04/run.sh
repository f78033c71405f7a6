set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 KDLIB_MODEL_ROOT=$PWD/.gpu/models KDLIB_DATA=$PWD/.gpu/data
nvidia-smi > $OUT/nvidia-smi.txt
python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__, torch.cuda.get_device_name())" | tee $OUT/versions.txt
python3 .gpu/random_models.py .gpu/models | tee -a $OUT/versions.txt
R=/tmp/runs/tiny; T0=$(date +%s)
for a in "--method sft --role teacher" "--method sft" "--method paper" "--method paper --minillm-form unbiased --ppo-epochs 4"; do
  s=$(date +%s); timeout 150 python3 -m kdlib.cli train --profile tiny --device cuda --out $R --no-progress $a > /tmp/log 2>&1; rc=$?
  echo "tiny train $a: rc $rc, $(( $(date +%s) - s )) s" | tee -a $OUT/tiny_cuda.txt; tail -3 /tmp/log >> $OUT/tiny_cuda.txt
done
s=$(date +%s); timeout 150 python3 -m kdlib.cli evaluate --profile tiny --device cuda --out $R --no-progress --tasks scene_ucmerced scene_aid vqa_lr vqa_hr referring > /tmp/log 2>&1; rc=$?
echo "tiny evaluate: rc $rc, $(( $(date +%s) - s )) s" | tee -a $OUT/tiny_cuda.txt; tail -15 /tmp/log >> $OUT/tiny_cuda.txt
find $R -name 'result*.json' -o -name '*.metrics.jsonl' | head -30 >> $OUT/tiny_cuda.txt
timeout 280 python3 benchmarks/train_step.py --profile small --device cuda --steps 8 2>&1 | tee $OUT/train_step_small_cuda.txt
echo total $(( $(date +%s) - T0 )) s
