module kpi.local/tools/floor

go 1.26.0
