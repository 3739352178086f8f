"""Shipped MetaSchedule tuning logs, one folder per target name (data, no code): installed as a
package so that ``dynfilter_tvm.tuning_log.default_root`` finds them in any installation."""
